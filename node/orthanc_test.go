package node

import (
	"bytes"
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

// TestOrthancAsDICOMwebClient: Orthanc (Debian's orthanc and
// orthanc-dicomweb), configured with the node as a DICOMweb server, pushes
// a study into it with STOW-RS, finds it with QIDO-RS and retrieves it with
// WADO-RS, through Orthanc's own REST API: software nobody here wrote,
// talking to the node unchanged.
func TestOrthancAsDICOMwebClient(t *testing.T) {
	orthanc, err := exec.LookPath("Orthanc")
	plugin := "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
	if _, perr := os.Stat(plugin); err != nil || perr != nil {
		t.Skip("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")
	}
	n := openTestNode(t)
	srv := httptest.NewServer(n.handler(prometheus.NewRegistry(), nil))
	defer srv.Close()

	dir := t.TempDir()
	port := freePort(t)
	cfg := map[string]any{
		"Name": "orthanc-client", "StorageDirectory": filepath.Join(dir, "storage"), "IndexDirectory": filepath.Join(dir, "storage"),
		"Plugins": []string{plugin}, "HttpPort": port, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		"DicomServerEnabled": false, "HttpTimeout": 120, "SaveJobs": false,
		"DicomWeb": map[string]any{"Enable": true, "Root": "/dicom-web/", "Servers": map[string]any{"node": []string{srv.URL + "/dicom-web/"}}},
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "orthanc.json")
	os.WriteFile(cfgPath, b, 0o600)
	cmd := exec.Command(orthanc, "--logdir="+dir, cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
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
	call := func(method, path string, body any) []byte {
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

	// A study in Orthanc, pushed to the node with STOW-RS.
	spec, _ := synth.DefaultSpec("ct")
	spec.Slices, spec.Rows, spec.Cols = 3, 64, 64
	st, err := synth.Write(t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
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
}
