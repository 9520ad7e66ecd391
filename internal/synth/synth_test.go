package synth

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func small(preset string) Spec {
	s, _ := DefaultSpec(preset)
	s.Slices, s.Rows, s.Cols = 3, 32, 32
	return s
}

func TestDeterministic(t *testing.T) {
	for _, p := range []string{"ct", "mr", "cr"} {
		var a, b [][]byte
		Instances(small(p), func(_ string, d []byte) error { a = append(a, d); return nil })
		Instances(small(p), func(_ string, d []byte) error { b = append(b, d); return nil })
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: %d vs %d instances", p, len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				t.Fatalf("%s: instance %d differs between runs", p, i)
			}
		}
		other := small(p)
		other.Seed = 2
		var c []byte
		Instances(other, func(_ string, d []byte) error { c = d; return nil })
		if bytes.Equal(c, a[len(a)-1]) {
			t.Fatalf("%s: another seed wrote the same bytes", p)
		}
	}
	if _, err := DefaultSpec("pet"); err == nil {
		t.Fatal("unknown preset accepted")
	}
}

func TestFilesParse(t *testing.T) {
	dir := t.TempDir()
	spec := small("mr")
	st, err := Write(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Files) != 12 {
		t.Fatalf("%d files, want 4 series x 3", len(st.Files))
	}
	ds, err := dicom.ParseFile(st.Files[5].Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for tg, want := range map[tag.Tag]string{
		tag.PatientName:       "DOE^JANE",
		tag.IssuerOfPatientID: "RURAL-HOSP",
		tag.StudyInstanceUID:  st.UID,
		tag.SOPInstanceUID:    st.Files[5].SOPInstanceUID,
		tag.SeriesInstanceUID: st.Files[5].SeriesInstanceUID,
		tag.Modality:          "MR",
	} {
		el, err := ds.FindElementByTag(tg)
		if err != nil {
			t.Fatalf("%v: %v", tg, err)
		}
		if got := strings.TrimRight(dicom.MustGetStrings(el.Value)[0], "\x00 "); got != want {
			t.Errorf("%v = %q, want %q", tg, got, want)
		}
	}
	px, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		t.Fatal(err)
	}
	info := dicom.MustGetPixelDataInfo(px.Value)
	if len(info.Frames) != 1 {
		t.Fatalf("%d frames", len(info.Frames))
	}
}

// TestDcmtkAcceptsFiles checks the files with dcmtk, software nobody here
// wrote, when it is installed.
func TestDcmtkAcceptsFiles(t *testing.T) {
	if _, err := exec.LookPath("dcmftest"); err != nil {
		t.Skip("dcmtk not installed (apt-get install dcmtk)")
	}
	dir := t.TempDir()
	st, err := Write(dir, small("ct"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dcmftest", st.Files[0].Path).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "yes:") {
		t.Fatalf("dcmftest: %s %v", out, err)
	}
	out, err = exec.Command("dcmdump", "-E", "+L", filepath.Clean(st.Files[1].Path)).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump: %s %v", out, err)
	}
	for _, want := range []string{"(0010,0021) LO [RURAL-HOSP]", "(0028,0010) US 32", "(7fe0,0010) OW"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dcmdump output lacks %q", want)
		}
	}
}
