package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/dimse"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const dicomwebPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

// needOrthanc skips a test when Orthanc or its DICOMweb plugin is missing.
func needOrthanc(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("Orthanc")
	if _, perr := os.Stat(dicomwebPlugin); err != nil || perr != nil {
		t.Skip("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")
	}
}

// startOrthanc runs Orthanc with its DICOMweb plugin on a free loopback
// port, with cfg over the defaults, until the test ends, and returns its
// URL and a function that calls its REST API and fails the test on any
// error.
func startOrthanc(t *testing.T, cfg map[string]any) (string, func(method, path string, body any) []byte) {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	all := map[string]any{
		"StorageDirectory": filepath.Join(dir, "storage"), "IndexDirectory": filepath.Join(dir, "storage"),
		"Plugins": []string{dicomwebPlugin}, "HttpPort": port, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		"DicomServerEnabled": false, "HttpTimeout": 120, "SaveJobs": false,
	}
	for k, v := range cfg {
		all[k] = v
	}
	b, _ := json.Marshal(all)
	cfgPath := filepath.Join(dir, "orthanc.json")
	os.WriteFile(cfgPath, b, 0o600)
	cmd := exec.Command("Orthanc", "--logdir="+dir, cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r, err := http.Get(url + "/system"); err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Orthanc did not start")
		}
	}
	return url, func(method, path string, body any) []byte {
		t.Helper()
		var rd io.Reader
		switch v := body.(type) {
		case []byte:
			rd = bytes.NewReader(v)
		case nil:
		default:
			j, _ := json.Marshal(v)
			rd = bytes.NewReader(j)
		}
		req, _ := http.NewRequest(method, url+path, rd)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("Orthanc %s %s: %s %s", method, path, resp.Status, out)
		}
		return out
	}
}

// TestOrthancAsDICOMwebClient: Orthanc (Debian's orthanc and
// orthanc-dicomweb), configured with the node as a DICOMweb server and as a
// DICOM modality, pushes a study into it with STOW-RS, finds it with
// QIDO-RS and retrieves it with WADO-RS; then C-STOREs another study into
// the node, and receives one the node pushes: all through Orthanc's own
// REST API, software nobody here wrote, talking to the node unchanged.
func TestOrthancAsDICOMwebClient(t *testing.T) {
	needOrthanc(t)
	n := openTestNode(t)
	srv := httptest.NewServer(n.handler(prometheus.NewRegistry(), nil))
	defer srv.Close()

	// The node's DIMSE service, for Orthanc's C-STORE into it.
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(context.Background())
	defer dcancel()
	go dimse.NewServer(dimse.Config{AET: "DICOMESH", Store: n, Finder: n, Mover: n, WithActor: WithActor}).Serve(dctx, dl)
	nodePort := dl.Addr().(*net.TCPAddr).Port

	dicomPort := freePort(t)
	_, call := startOrthanc(t, map[string]any{
		"Name": "orthanc-client", "DicomServerEnabled": true, "DicomAet": "ORTHANC", "DicomPort": dicomPort,
		"DicomCheckCalledAet": false, "DicomAlwaysAllowStore": true,
		"DicomModalities": map[string]any{"node": []any{"DICOMESH", "127.0.0.1", nodePort}},
		"DicomWeb":        map[string]any{"Enable": true, "Root": "/dicom-web/", "Servers": map[string]any{"node": []string{srv.URL + "/dicom-web/"}}},
	})

	// A study in Orthanc, pushed to the node with STOW-RS.
	_, st := synthStudy(t, "ct", func(s *synth.Spec) { s.Slices, s.Rows, s.Cols = 3, 64, 64 })
	originals := map[string][]byte{}
	for _, f := range st.Files {
		data, _ := os.ReadFile(f.Path)
		originals[f.SOPInstanceUID] = data
		call("POST", "/instances", data)
	}
	var ids []string
	json.Unmarshal(call("GET", "/studies", nil), &ids)
	if len(ids) != 1 {
		t.Fatalf("Orthanc holds %d studies", len(ids))
	}
	call("POST", "/dicom-web/servers/node/stow", map[string]any{"Resources": ids, "Synchronous": true})
	stored, err := n.Archive.Study(st.UID)
	if err != nil || stored.Instances != len(st.Files) {
		t.Fatalf("after Orthanc's STOW-RS the node holds %+v %v", stored, err)
	}
	for sop, want := range originals {
		if got := read(t, n, st.UID, sop); !bytes.Equal(got, want) {
			t.Fatalf("instance %s stored by STOW-RS differs", sop)
		}
	}

	// Orthanc finds it with QIDO-RS ...
	var found []map[string]any
	json.Unmarshal(call("POST", "/dicom-web/servers/node/qido", map[string]any{"Uri": "/studies", "Arguments": map[string]string{"StudyInstanceUID": st.UID}}), &found)
	if len(found) != 1 {
		t.Fatalf("Orthanc's QIDO-RS found %d studies", len(found))
	}
	// ... and, once its own copy is gone, retrieves it with WADO-RS.
	call("DELETE", "/studies/"+ids[0], nil)
	call("POST", "/dicom-web/servers/node/retrieve", map[string]any{"Resources": []map[string]string{{"Study": st.UID}}, "Synchronous": true})
	var stats struct{ CountInstances int }
	json.Unmarshal(call("GET", "/statistics", nil), &stats)
	if stats.CountInstances != len(st.Files) {
		t.Fatalf("Orthanc retrieved %d of %d instances with WADO-RS", stats.CountInstances, len(st.Files))
	}

	// Orthanc as a PACS: it C-STOREs a second study into the node ...
	_, st2 := synthStudy(t, "cr", func(s *synth.Spec) { s.Seed = 9 })
	for _, f := range st2.Files {
		data, _ := os.ReadFile(f.Path)
		call("POST", "/instances", data)
	}
	var orthancStudies []string
	json.Unmarshal(call("GET", "/studies", nil), &orthancStudies)
	call("POST", "/modalities/node/store", map[string]any{"Resources": orthancStudies, "Synchronous": true})
	if got, err := waitStudy(n, st2.UID, len(st2.Files)); err != nil {
		t.Fatalf("after Orthanc's C-STORE the node holds %+v %v", got, err)
	}
	// ... and the node pushes the first study back into it by C-STORE, as
	// it would import a received study into the local PACS.
	for _, id := range orthancStudies {
		call("DELETE", "/studies/"+id, nil)
	}
	res, err := n.Push(context.Background(), st.UID, dimse.Destination{AET: "ORTHANC", Host: "127.0.0.1", Port: dicomPort})
	if err != nil || res.Sent != len(st.Files) {
		t.Fatalf("push into Orthanc: %+v %v", res, err)
	}
	json.Unmarshal(call("GET", "/statistics", nil), &stats)
	if stats.CountInstances != len(st.Files) {
		t.Fatalf("Orthanc received %d of %d instances from the node", stats.CountInstances, len(st.Files))
	}
}
