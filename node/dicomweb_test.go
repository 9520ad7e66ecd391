package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/audit"
)

// bomb is a small Part 10 file declaring a 4 GiB element.
func bomb() []byte {
	b := make([]byte, 128, 184)
	b = append(b, "DICM"...)
	ts := "1.2.840.10008.1.2.1\x00"
	b = append(b, 0x02, 0x00, 0x10, 0x00, 'U', 'I')
	b = binary.LittleEndian.AppendUint16(b, uint16(len(ts)))
	b = append(b, ts...)
	b = append(b, 0x10, 0x00, 0x10, 0x00, 'O', 'B', 0, 0)
	b = binary.LittleEndian.AppendUint32(b, 0xFFFFFFF0)
	for len(b) < 184 {
		b = append(b, 0)
	}
	return b
}

func readParts(t *testing.T, resp *http.Response) [][]byte {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return parts(t, resp.Header.Get("Content-Type"), b)
}

func multipartBody(t *testing.T, parts ...[]byte) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(p)
	}
	mw.Close()
	return &buf, `multipart/related; type="application/dicom"; boundary=` + mw.Boundary()
}

// webNode serves a test node's HTTP API and writes a small MR study of the
// given number of slices, returning its files' bytes.
func webNode(t *testing.T, slices int) (*Node, *httptest.Server, synth.Study, [][]byte) {
	t.Helper()
	n := openTestNode(t)
	srv := httptest.NewServer(n.handler(prometheus.NewRegistry(), nil))
	t.Cleanup(srv.Close)
	_, st := synthStudy(t, "mr", func(s *synth.Spec) { s.Slices, s.Rows, s.Cols = slices, 32, 32 })
	var parts [][]byte
	for _, f := range st.Files {
		b, _ := os.ReadFile(f.Path)
		parts = append(parts, b)
	}
	return n, srv, st, parts
}

// TestDICOMweb: STOW-RS stores good instances and refuses a hostile one
// per instance; QIDO-RS finds the study with a VR on every attribute;
// WADO-RS returns the original bytes; errors carry CORS headers; every
// request is audited.
func TestDICOMweb(t *testing.T) {
	n, srv, st, parts := webNode(t, 2)
	body, ct := multipartBody(t, append(parts, bomb())...)
	resp, err := http.Post(srv.URL+"/dicom-web/studies", ct, body)
	if err != nil {
		t.Fatal(err)
	}
	var stow map[string]struct {
		VR    string
		Value []json.RawMessage
	}
	json.NewDecoder(resp.Body).Decode(&stow)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || len(stow["00081199"].Value) != len(parts) || len(stow["00081198"].Value) != 1 {
		t.Fatalf("STOW: %s, %d stored, %d failed", resp.Status, len(stow["00081199"].Value), len(stow["00081198"].Value))
	}

	get := func(path, accept string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp = get("/dicom-web/studies?PatientID="+st.Patient.ID+"&limit=10", "application/dicom+json")
	var studies []map[string]struct {
		VR    string
		Value []any
	}
	json.NewDecoder(resp.Body).Decode(&studies)
	resp.Body.Close()
	if len(studies) != 1 {
		t.Fatalf("QIDO found %d studies", len(studies))
	}
	for tag, a := range studies[0] {
		if a.VR == "" {
			t.Errorf("attribute %s has no vr", tag)
		}
	}
	if v := studies[0]["00201208"].Value; len(v) != 1 || v[0].(float64) != float64(len(parts)) {
		t.Fatalf("instances in study: %v", v)
	}

	f := st.Files[0]
	resp = get("/dicom-web/studies/"+st.UID+"/series/"+f.SeriesInstanceUID+"/instances/"+f.SOPInstanceUID, `multipart/related; type="application/dicom"`)
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "multipart/related" {
		t.Fatalf("WADO content type %q", resp.Header.Get("Content-Type"))
	}
	p, err := multipart.NewReader(resp.Body, params["boundary"]).NextPart()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(p)
	resp.Body.Close()
	if !bytes.Equal(got, parts[0]) {
		t.Fatal("WADO-RS bytes differ from what was stored")
	}

	// includefield reads what the index does not hold from the instance;
	// fuzzy matching finds the patient by the given name.
	decode := func(resp *http.Response) []map[string]struct {
		VR    string
		Value []any
	} {
		var out []map[string]struct {
			VR    string
			Value []any
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		return out
	}
	inst := decode(get("/dicom-web/studies/"+st.UID+"/series/"+f.SeriesInstanceUID+"/instances?includefield=00280010&includefield=Columns&SOPInstanceUID="+f.SOPInstanceUID, ""))
	if len(inst) != 1 || len(inst[0]["00280010"].Value) != 1 || inst[0]["00280010"].Value[0].(float64) != 32 || inst[0]["00280011"].VR != "US" {
		t.Fatalf("includefield rows and columns: %+v", inst)
	}
	given := strings.ToLower(st.Patient.Given)
	if found := decode(get("/dicom-web/studies?PatientName="+given+"&fuzzymatching=true", "")); len(found) != 1 {
		t.Fatalf("fuzzy match on the given name found %d studies", len(found))
	}
	if found := decode(get("/dicom-web/studies?PatientName="+given, "")); len(found) != 0 {
		t.Fatalf("exact match on the given name found %d studies", len(found))
	}
	resp = get("/dicom-web/studies?includefield=NoSuchKeyword", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown includefield: %s", resp.Status)
	}

	// Metadata refers to the pixel data; the bulk URI serves its bytes,
	// which are the frame's.
	resp = get("/dicom-web/studies/"+st.UID+"/series/"+f.SeriesInstanceUID+"/instances/"+f.SOPInstanceUID+"/metadata", "")
	var md []map[string]struct{ BulkDataURI string }
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if len(md) != 1 || md[0]["7FE00010"].BulkDataURI == "" {
		t.Fatalf("metadata: %+v", md)
	}
	bulk := strings.TrimPrefix(md[0]["7FE00010"].BulkDataURI, srv.URL)
	frame := get(bulk[:strings.Index(bulk, "/bulk/")]+"/frames/1", "")
	bulkResp := get(bulk, "")
	fp, bp := readParts(t, frame), readParts(t, bulkResp)
	if len(fp) != 1 || len(bp) != 1 || !bytes.Equal(fp[0], bp[0]) || len(fp[0]) != 32*32*2 {
		t.Fatalf("frame and bulk pixel data differ: %d and %d parts", len(fp), len(bp))
	}
	resp = get("/dicom-web/studies/"+st.UID+"/series/"+f.SeriesInstanceUID+"/instances/"+f.SOPInstanceUID+"/frames/1", `multipart/related; type="image/jls"`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("frames asked for in JPEG-LS from native data: %s", resp.Status)
	}

	resp = get("/dicom-web/studies/1.2.3.4", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("unknown study: %s, CORS %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp = get("/dicom-web/studies/"+st.UID, "application/pdf")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("Accept: application/pdf: %s", resp.Status)
	}

	recs, err := n.Audit.Search(context.Background(), audit.Actor{User: "officer"}, audit.Query{User: "dicomweb-client"})
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, r := range recs {
		events = append(events, string(r.Event))
	}
	if s := strings.Join(events, " "); !strings.Contains(s, "110107") || !strings.Contains(s, "110112") || !strings.Contains(s, "110103") {
		t.Fatalf("audit events of the DICOMweb client: %s", s)
	}
}

// TestStowEveryInstance: a request of two studies, parts of several
// sizes read into recycled buffers and stored by several workers: every
// instance is stored byte for byte.
func TestStowEveryInstance(t *testing.T) {
	n, srv, mr, parts := webNode(t, 24)
	_, cr := synthStudy(t, "cr", nil)
	want := map[string][]byte{}
	for i, f := range mr.Files {
		want[f.SOPInstanceUID] = parts[i]
	}
	for _, f := range cr.Files {
		b, _ := os.ReadFile(f.Path)
		want[f.SOPInstanceUID] = b
		parts = append(parts[:len(parts)/2], append([][]byte{b}, parts[len(parts)/2:]...)...)
	}
	body, ct := multipartBody(t, parts...)
	resp, err := http.Post(srv.URL+"/dicom-web/studies", ct, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("STOW-RS: %s", resp.Status)
	}
	for _, st := range []synth.Study{mr, cr} {
		for _, f := range st.Files {
			if got := read(t, n, st.UID, f.SOPInstanceUID); !bytes.Equal(got, want[f.SOPInstanceUID]) {
				t.Fatalf("instance %s of %s stored with other bytes", f.SOPInstanceUID, st.UID)
			}
		}
	}
}

// TestStowWaitsForBusyStudy: a STOW-RS request for a study that another
// writer has open (an association's commit) waits for it and stores its
// instances, instead of refusing them.
func TestStowWaitsForBusyStudy(t *testing.T) {
	n, srv, st, parts := webNode(t, 2)
	other, err := n.Archive.Begin(st.UID)
	if err != nil {
		t.Fatal(err)
	}
	body, ct := multipartBody(t, parts...)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/dicom-web/studies", ct, body)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		t.Fatalf("STOW-RS answered (%v) while the study was open", resp)
	case <-time.After(200 * time.Millisecond):
	}
	other.Rollback()
	resp := <-done
	if resp == nil {
		t.FailNow()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("STOW-RS after the study was released: %s", resp.Status)
	}
	if got, err := n.Archive.Study(st.UID); err != nil || got.Instances != len(parts) {
		t.Fatalf("stored: %+v %v", got.Instances, err)
	}
}

// TestStowCutShort: a STOW-RS body that breaks off after some instances
// were already being stored is refused as a whole, nothing of it is
// committed, and the same study can be sent again at once.
func TestStowCutShort(t *testing.T) {
	n, srv, st, parts := webNode(t, 3)
	body, ct := multipartBody(t, parts...)
	whole := body.Bytes()
	// Cut inside the last part: the closing boundary never comes.
	cut := whole[:len(whole)-len(parts[len(parts)-1])/2]
	resp, err := http.Post(srv.URL+"/dicom-web/studies", ct, bytes.NewReader(cut))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a body cut short: %s, want 400", resp.Status)
	}
	if _, err := n.Archive.Study(st.UID); err == nil {
		t.Fatal("a study from a body cut short was committed")
	}
	resp, err = http.Post(srv.URL+"/dicom-web/studies", ct, bytes.NewReader(whole))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the whole body after the cut one: %s", resp.Status)
	}
	if got, err := n.Archive.Study(st.UID); err != nil || got.Instances != len(parts) {
		t.Fatalf("after the whole body: %+v %v", got, err)
	}
}
