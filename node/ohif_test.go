package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dicomesh/dicomesh/internal/synth"
)

// ohifGet sends one request the way the OHIF viewer's DICOMweb client
// does and returns the status, the content type and the body.
func ohifGet(t *testing.T, url, accept string) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", accept)
	req.Header.Set("Origin", "http://viewer.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// parts splits a multipart/related body.
func parts(t *testing.T, ct string, body []byte) [][]byte {
	t.Helper()
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("content type %q: %v", ct, err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		out = append(out, b)
	}
}

type dcmJSON = map[string]map[string]any

// compareDatasets compares two DICOM JSON datasets attribute by attribute:
// every attribute Orthanc gives, the node gives with the same VR and
// values; URLs are compared after /dicom-web, bulk data by kind. skip
// lists the attributes only one side gives, each with the reason.
func compareDatasets(t *testing.T, what string, node, orthanc dcmJSON, skip map[string]string) {
	t.Helper()
	for k, o := range orthanc {
		if _, ok := skip[k]; ok {
			continue
		}
		n, ok := node[k]
		if !ok {
			t.Errorf("%s: %s (%v) missing on the node", what, k, o)
			continue
		}
		if n["vr"] != o["vr"] {
			t.Errorf("%s: %s vr %v, Orthanc %v", what, k, n["vr"], o["vr"])
			continue
		}
		if o["BulkDataURI"] != nil || o["InlineBinary"] != nil {
			if n["BulkDataURI"] == nil && n["InlineBinary"] == nil {
				t.Errorf("%s: %s has no bulk data on the node", what, k)
			}
			continue
		}
		nv, ov := n["Value"], o["Value"]
		if o["vr"] == "UR" {
			nv, ov = afterRoot(nv), afterRoot(ov)
		}
		if o["vr"] == "SQ" {
			ni, _ := nv.([]any)
			oi, _ := ov.([]any)
			if len(ni) != len(oi) {
				t.Errorf("%s: %s has %d items, Orthanc %d", what, k, len(ni), len(oi))
				continue
			}
			for i := range oi {
				compareDatasets(t, fmt.Sprintf("%s %s[%d]", what, k, i), toDataset(ni[i]), toDataset(oi[i]), skip)
			}
			continue
		}
		if !reflect.DeepEqual(nv, ov) {
			t.Errorf("%s: %s = %v, Orthanc %v", what, k, nv, ov)
		}
	}
	for k := range node {
		if _, ok := orthanc[k]; !ok {
			if _, ok := skip[k]; !ok {
				t.Errorf("%s: %s only on the node", what, k)
			}
		}
	}
}

func afterRoot(v any) any {
	vs, _ := v.([]any)
	var out []any
	for _, x := range vs {
		s, _ := x.(string)
		_, rest, _ := strings.Cut(s, "/dicom-web")
		out = append(out, strings.TrimSuffix(rest, "/"))
	}
	return out
}

func toDataset(v any) dcmJSON {
	m, _ := v.(map[string]any)
	out := dcmJSON{}
	for k, a := range m {
		out[k], _ = a.(map[string]any)
	}
	return out
}

func decodeList(t *testing.T, what string, b []byte) []dcmJSON {
	t.Helper()
	var raw []map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v: %.200s", what, err, b)
	}
	out := make([]dcmJSON, len(raw))
	for i, r := range raw {
		out[i] = toDataset(r)
	}
	return out
}

// bySOP indexes instance datasets by SOP Instance UID.
func bySOP(ds []dcmJSON) map[string]dcmJSON {
	out := map[string]dcmJSON{}
	for _, d := range ds {
		v, _ := d["00080018"]["Value"].([]any)
		if len(v) == 1 {
			out[v[0].(string)] = d
		}
	}
	return out
}

// TestOHIFRequestsMatchOrthanc replays the requests the OHIF viewer sends
// to open a study (the study list, the study, its series, each series'
// metadata, frames with transfer-syntax=*, thumbnails and rendered
// images) against the node and against Orthanc's DICOMweb plugin holding
// the same study, and compares the answers field by field; every answer
// of the node carries CORS headers.
func TestOHIFRequestsMatchOrthanc(t *testing.T) {
	needOrthanc(t)
	n := openTestNode(t)
	srv := httptest.NewServer(n.handler(prometheus.NewRegistry(), nil))
	defer srv.Close()
	orthancURL, call := startOrthanc(t, map[string]any{
		"Name":     "orthanc-ohif",
		"DicomWeb": map[string]any{"Enable": true, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
	})

	var sopUIDs []string
	var studyUID string
	for i, preset := range []string{"ct", "mr"} {
		_, st := synthStudy(t, preset, func(s *synth.Spec) {
			s.Slices, s.Rows, s.Cols = 3, 64, 48
			s.Seed = int64(20 + i)
		})
		var datas [][]byte
		for _, f := range st.Files {
			b, _ := os.ReadFile(f.Path)
			call("POST", "/instances", b)
			datas = append(datas, b)
			if i == 0 {
				sopUIDs = append(sopUIDs, f.SOPInstanceUID)
			}
		}
		body, ct := multipartBody(t, datas...)
		resp, err := http.Post(srv.URL+"/dicom-web/studies", ct, body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("STOW-RS: %v %v", resp, err)
		}
		resp.Body.Close()
		if i == 0 {
			studyUID = st.UID
		}
	}
	node, orth := srv.URL+"/dicom-web", orthancURL+"/dicom-web"
	const dicomJSON = "application/dicom+json"
	both := func(path, accept string) (nodeBody, orthancBody []byte, nodeCT, orthancCT string) {
		t.Helper()
		ns, nct, nb := ohifGet(t, node+path, accept)
		os, oct, ob := ohifGet(t, orth+path, accept)
		if ns != 200 || os != 200 {
			t.Fatalf("GET %s: node %d (%.200s), Orthanc %d (%.200s)", path, ns, nb, os, ob)
		}
		return nb, ob, nct, oct
	}

	// The study list, then the list filtered by name as the search box
	// does it.
	charset := "specific character set: values in JSON are UTF-8, so the node (like dcmtk's dcm2json) says ISO_IR 192; Orthanc names its default encoding"
	studyOnlyNode := map[string]string{
		"00080005": charset,
		"00081030": "study description, asked for by includefield: Orthanc leaves it out",
		"00100021": "issuer of patient ID: the node indexes patients by issuer-qualified ID",
		"00080060": "modality, asked for by includefield: the node reads it from the study's first instance",
	}
	for _, q := range []string{
		"/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060",
		"/studies?PatientName=*&limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060",
	} {
		nb, ob, _, _ := both(q, dicomJSON)
		nl, ol := decodeList(t, q, nb), decodeList(t, q, ob)
		if len(nl) != 2 || len(ol) != 2 {
			t.Fatalf("%s: node %d studies, Orthanc %d", q, len(nl), len(ol))
		}
		sortByUID := func(l []dcmJSON) {
			sort.Slice(l, func(i, j int) bool {
				return fmt.Sprint(l[i]["0020000D"]["Value"]) < fmt.Sprint(l[j]["0020000D"]["Value"])
			})
		}
		sortByUID(nl)
		sortByUID(ol)
		for i := range nl {
			compareDatasets(t, q, nl[i], ol[i], studyOnlyNode)
		}
	}

	// The study the viewer opens, and its series.
	nb, ob, _, _ := both("/studies?StudyInstanceUID="+studyUID, dicomJSON)
	compareDatasets(t, "study", decodeList(t, "study", nb)[0], decodeList(t, "study", ob)[0], studyOnlyNode)
	nb, ob, _, _ = both("/studies/"+studyUID+"/series", dicomJSON)
	nseries, oseries := decodeList(t, "series", nb), decodeList(t, "series", ob)
	if len(nseries) != 1 || len(oseries) != 1 {
		t.Fatalf("series: node %d, Orthanc %d", len(nseries), len(oseries))
	}
	seriesOnly := map[string]string{
		"00080005": charset,
		"00180015": "body part examined: the node indexes it for its own finds",
	}
	compareDatasets(t, "series", nseries[0], oseries[0], seriesOnly)
	seriesUID := nseries[0]["0020000E"]["Value"].([]any)[0].(string)

	// The series metadata, instance by instance.
	nb, ob, _, _ = both("/studies/"+studyUID+"/series/"+seriesUID+"/metadata", dicomJSON)
	nmeta, ometa := bySOP(decodeList(t, "metadata", nb)), bySOP(decodeList(t, "metadata", ob))
	if len(nmeta) != len(sopUIDs) || len(ometa) != len(sopUIDs) {
		t.Fatalf("metadata: node %d instances, Orthanc %d, want %d", len(nmeta), len(ometa), len(sopUIDs))
	}
	for _, sop := range sopUIDs {
		compareDatasets(t, "metadata "+sop, nmeta[sop], ometa[sop], map[string]string{"00080005": charset})
	}

	// Frames, as OHIF asks for them: byte for byte the same.
	const framesAccept = "multipart/related; type=application/octet-stream; transfer-syntax=*"
	for _, sop := range sopUIDs {
		path := "/studies/" + studyUID + "/series/" + seriesUID + "/instances/" + sop + "/frames/1"
		nb, ob, nct, oct := both(path, framesAccept)
		np, op := parts(t, nct, nb), parts(t, oct, ob)
		if len(np) != 1 || len(op) != 1 || !bytes.Equal(np[0], op[0]) {
			t.Fatalf("frame of %s differs: node %d parts, Orthanc %d", sop, len(np), len(op))
		}
		if len(np[0]) != 64*48*2 {
			t.Fatalf("frame of %s has %d bytes", sop, len(np[0]))
		}
	}

	// Rendered images and thumbnails: images of the same size.
	inst := "/studies/" + studyUID + "/series/" + seriesUID + "/instances/" + sopUIDs[0]
	for _, tc := range []struct{ path, accept string }{
		{inst + "/rendered", "image/jpeg"},
		{inst + "/frames/1/rendered", "image/png"},
	} {
		nb, ob, nct, oct := both(tc.path, tc.accept)
		if nct != tc.accept || !strings.HasPrefix(oct, tc.accept) {
			t.Fatalf("%s: node %q, Orthanc %q", tc.path, nct, oct)
		}
		ni, _, err1 := image.Decode(bytes.NewReader(nb))
		oi, _, err2 := image.Decode(bytes.NewReader(ob))
		if err1 != nil || err2 != nil || ni.Bounds() != oi.Bounds() {
			t.Fatalf("%s: node %v %v, Orthanc %v %v", tc.path, ni.Bounds(), err1, oi.Bounds(), err2)
		}
	}
	for _, path := range []string{"/studies/" + studyUID + "/thumbnail", "/studies/" + studyUID + "/series/" + seriesUID + "/thumbnail", inst + "/thumbnail"} {
		status, ct, b := ohifGet(t, node+path, "image/jpeg")
		img, _, err := image.Decode(bytes.NewReader(b))
		if status != 200 || ct != "image/jpeg" || err != nil || img.Bounds().Dx() > 128 || img.Bounds().Dy() > 128 {
			t.Fatalf("thumbnail %s: %d %s %v", path, status, ct, err)
		}
	}

	// CORS on every answer, errors included.
	for _, path := range []string{"/studies", "/studies/1.2.3/series", inst + "/frames/9"} {
		req, _ := http.NewRequest("GET", node+path, nil)
		req.Header.Set("Origin", "http://viewer.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Access-Control-Allow-Origin") == "" {
			t.Fatalf("%s (%d): no CORS header", path, resp.StatusCode)
		}
	}
}
