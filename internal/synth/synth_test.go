package synth

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	dtag "github.com/suyashkumar/dicom/pkg/tag"
)

// small returns a preset shrunk to a few small images.
func small(t testing.TB, preset string) Spec {
	t.Helper()
	s, err := DefaultSpec(preset)
	if err != nil {
		t.Fatal(err)
	}
	s.Slices, s.Rows, s.Cols = 3, 48, 40
	return s
}

func collect(t testing.TB, s Spec) (names []string, data [][]byte) {
	t.Helper()
	err := Instances(s, func(name string, d []byte) error {
		names = append(names, name)
		data = append(data, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names, data
}

func TestDeterministic(t *testing.T) {
	for _, p := range Presets {
		t.Run(p, func(t *testing.T) {
			names, a := collect(t, small(t, p))
			_, b := collect(t, small(t, p))
			if len(a) == 0 || len(a) != len(b) {
				t.Fatalf("%d vs %d instances", len(a), len(b))
			}
			for i := range a {
				if !bytes.Equal(a[i], b[i]) {
					t.Fatalf("%s differs between runs", names[i])
				}
			}
			other := small(t, p)
			other.Seed = 2
			_, c := collect(t, other)
			for i := range c {
				if bytes.Equal(c[i], a[i]) {
					t.Fatalf("seed 2 wrote the same bytes as seed 1 for %s", names[i])
				}
			}
		})
	}
}

func TestSameBytesWhateverTheWorkers(t *testing.T) {
	s := small(t, "mr")
	_, want := collect(t, s)
	for _, procs := range []int{1, 3, 8} {
		old := runtime.GOMAXPROCS(procs)
		_, got := collect(t, s)
		runtime.GOMAXPROCS(old)
		for i := range want {
			if !bytes.Equal(want[i], got[i]) {
				t.Fatalf("GOMAXPROCS=%d: instance %d differs", procs, i)
			}
		}
	}
}

func TestInstanceNamesAndCounts(t *testing.T) {
	for _, tc := range []struct {
		preset string
		want   []string
	}{
		{"ct", []string{"1/0001.dcm", "1/0002.dcm", "1/0003.dcm"}},
		{"mr", []string{"1/0001.dcm", "1/0002.dcm", "1/0003.dcm", "2/0001.dcm", "2/0002.dcm", "2/0003.dcm",
			"3/0001.dcm", "3/0002.dcm", "3/0003.dcm", "4/0001.dcm", "4/0002.dcm", "4/0003.dcm"}},
		{"cr", []string{"1/0001.dcm", "1/0002.dcm", "1/0003.dcm"}},
	} {
		names, _ := collect(t, small(t, tc.preset))
		if diff := diff(tc.want, names); diff != "" {
			t.Errorf("%s names (-want +got):\n%s", tc.preset, diff)
		}
	}
}

func TestDefaultCTSize(t *testing.T) {
	s, err := DefaultSpec("ct")
	if err != nil {
		t.Fatal(err)
	}
	if s.Slices != 400 || s.Rows != 512 || s.Cols != 512 {
		t.Fatalf("default ct is %d x %dx%d", s.Slices, s.Rows, s.Cols)
	}
	s.Slices = 1
	_, data := collect(t, s)
	// 512*512*2 bytes of pixels plus a header of a kilobyte or two.
	if n := len(data[0]); n < 524288+600 || n > 524288+4096 {
		t.Fatalf("a default CT slice is %d bytes", n)
	}
}

func TestWriteAndManifest(t *testing.T) {
	spec := small(t, "mr")
	dirA, dirB := t.TempDir(), t.TempDir()
	st, err := Write(dirA, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dirB, spec); err != nil {
		t.Fatal(err)
	}
	if len(st.Files) != 12 || len(st.Series) != 4 {
		t.Fatalf("%d files in %d series, want 12 in 4", len(st.Files), len(st.Series))
	}
	if !strings.HasPrefix(st.UID, "2.25.") || st.Patient != spec.Patient {
		t.Fatalf("study %q patient %+v", st.UID, st.Patient)
	}
	mA, err := os.ReadFile(filepath.Join(dirA, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	mB, err := os.ReadFile(filepath.Join(dirB, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mA, mB) {
		t.Fatal("manifests of the same spec differ")
	}
	var m Manifest
	if err := json.Unmarshal(mA, &m); err != nil {
		t.Fatal(err)
	}
	if m.StudyUID != st.UID || m.TotalFiles != 12 || m.TotalBytes != st.Bytes() || m.Patient != spec.Patient {
		t.Fatalf("manifest header %+v", m)
	}
	if diff := diff(st.Series, m.Series); diff != "" {
		t.Fatalf("manifest series (-study +manifest):\n%s", diff)
	}
	seen := map[string]bool{}
	for i, f := range m.Files {
		if f.Path != filepath.ToSlash(must(filepath.Rel(dirA, st.Files[i].Path))) {
			t.Errorf("file %d: manifest path %q, study path %q", i, f.Path, st.Files[i].Path)
		}
		for _, dir := range []string{dirA, dirB} {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Size {
				t.Errorf("%s in %s does not match its manifest entry", f.Path, dir)
			}
			if sum != st.Files[i].SHA256 || st.Files[i].Size != f.Size {
				t.Errorf("%s: Study.Files disagrees with the manifest", f.Path)
			}
		}
		if seen[f.SOPInstanceUID] {
			t.Errorf("SOP Instance UID %s used twice", f.SOPInstanceUID)
		}
		seen[f.SOPInstanceUID] = true
		if f.SOPInstanceUID != st.Files[i].SOPInstanceUID || f.SeriesInstanceUID != st.Files[i].SeriesInstanceUID {
			t.Errorf("%s: UIDs differ between manifest and Study", f.Path)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// parsed is one file read back by github.com/suyashkumar/dicom.
type parsed struct {
	t  *testing.T
	ds dicom.Dataset
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return parsed{t, ds}
}

func (p parsed) str(tg dtag.Tag) string {
	p.t.Helper()
	el, err := p.ds.FindElementByTag(tg)
	if err != nil {
		p.t.Fatalf("%v: %v", tg, err)
	}
	v := dicom.MustGetStrings(el.Value)
	for i := range v {
		v[i] = strings.TrimRight(v[i], "\x00 ")
	}
	return strings.Join(v, `\`)
}

func (p parsed) num(tg dtag.Tag) int {
	p.t.Helper()
	el, err := p.ds.FindElementByTag(tg)
	if err != nil {
		p.t.Fatalf("%v: %v", tg, err)
	}
	if el.Value.ValueType() == dicom.Ints {
		return dicom.MustGetInts(el.Value)[0]
	}
	n, err := strconv.Atoi(p.str(tg))
	if err != nil {
		p.t.Fatalf("%v: %v", tg, err)
	}
	return n
}

func (p parsed) floats(tg dtag.Tag) []float64 {
	p.t.Helper()
	var out []float64
	for _, s := range strings.Split(p.str(tg), `\`) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			p.t.Fatalf("%v: %v", tg, err)
		}
		out = append(out, f)
	}
	return out
}

func (p parsed) pixels() []int {
	p.t.Helper()
	el, err := p.ds.FindElementByTag(dtag.PixelData)
	if err != nil {
		p.t.Fatal(err)
	}
	info := dicom.MustGetPixelDataInfo(el.Value)
	if len(info.Frames) != 1 || info.Frames[0].Encapsulated {
		p.t.Fatalf("%d frames, want 1 native", len(info.Frames))
	}
	f := info.Frames[0].NativeData
	out := make([]int, 0, f.Rows()*f.Cols())
	for y := range f.Rows() {
		for x := range f.Cols() {
			v, err := f.GetPixel(x, y)
			if err != nil {
				p.t.Fatal(err)
			}
			out = append(out, v[0])
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		preset, modality, class, body string
		signed                        int
		series                        []string
	}{
		{"ct", "CT", ctImageStorage, "CHEST", 1, []string{"AXIAL 1.0MM"}},
		{"mr", "MR", mrImageStorage, "HEAD", 0, []string{"T1 AX", "T2 AX", "FLAIR AX", "T1 SAG"}},
		{"cr", "CR", crImageStorage, "CHEST", 0, []string{"CHEST PA AND LATERAL"}},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			spec := small(t, tc.preset)
			spec.Patient = Patient{Family: "ROSSI", Given: "LUCA", ID: "P-77", Issuer: "CITY-GENERAL", BirthDate: "19700615", Sex: "M"}
			spec.StudyDate, spec.Accession, spec.Description = "20260412", "A123456", "FOLLOW UP"
			dir := t.TempDir()
			st, err := Write(dir, spec)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range st.Files {
				data, err := os.ReadFile(f.Path)
				if err != nil {
					t.Fatal(err)
				}
				p := parse(t, data)
				se := i / spec.Slices
				got := map[string]string{
					"name": p.str(dtag.PatientName), "id": p.str(dtag.PatientID), "issuer": p.str(dtag.IssuerOfPatientID),
					"birth": p.str(dtag.PatientBirthDate), "sex": p.str(dtag.PatientSex), "age": p.str(dtag.PatientAge),
					"study": p.str(dtag.StudyInstanceUID), "date": p.str(dtag.StudyDate), "accession": p.str(dtag.AccessionNumber),
					"description": p.str(dtag.StudyDescription), "referrer": p.str(dtag.ReferringPhysicianName),
					"modality": p.str(dtag.Modality), "series": p.str(dtag.SeriesInstanceUID),
					"series desc": p.str(dtag.SeriesDescription), "body": p.str(dtag.BodyPartExamined),
					"sop": p.str(dtag.SOPInstanceUID), "class": p.str(dtag.SOPClassUID),
					"meta sop": p.str(dtag.MediaStorageSOPInstanceUID), "meta class": p.str(dtag.MediaStorageSOPClassUID),
					"syntax": p.str(dtag.TransferSyntaxUID), "impl": p.str(dtag.ImplementationClassUID),
				}
				want := map[string]string{
					"name": "ROSSI^LUCA", "id": "P-77", "issuer": "CITY-GENERAL", "birth": "19700615", "sex": "M", "age": "055Y",
					"study": st.UID, "date": "20260412", "accession": "A123456", "description": "FOLLOW UP", "referrer": "REFERRER^ROSA",
					"modality": tc.modality, "series": f.SeriesInstanceUID, "series desc": tc.series[se], "body": tc.body,
					"sop": f.SOPInstanceUID, "class": tc.class, "meta sop": f.SOPInstanceUID, "meta class": tc.class,
					"syntax": "1.2.840.10008.1.2.1", "impl": ImplementationClassUID,
				}
				if diff := diff(want, got); diff != "" {
					t.Fatalf("%s (-want +got):\n%s", f.Path, diff)
				}
				if n := p.num(dtag.SeriesNumber); n != se+1 {
					t.Errorf("%s: series number %d", f.Path, n)
				}
				if n := p.num(dtag.InstanceNumber); n != i%spec.Slices+1 {
					t.Errorf("%s: instance number %d", f.Path, n)
				}
				if r, c, pr := p.num(dtag.Rows), p.num(dtag.Columns), p.num(dtag.PixelRepresentation); r != 48 || c != 40 || pr != tc.signed {
					t.Errorf("%s: %dx%d pixel representation %d", f.Path, r, c, pr)
				}
				px := p.pixels()
				if len(px) != 48*40 {
					t.Fatalf("%s: %d pixels", f.Path, len(px))
				}
				lo, hi := px[0], px[0]
				for _, v := range px {
					lo, hi = min(lo, v), max(hi, v)
				}
				if lo < 0 || hi > 4095 || hi-lo < 500 {
					t.Errorf("%s: pixel values %d..%d: want a phantom within 0..4095", f.Path, lo, hi)
				}
			}
		})
	}
}

func TestGeometry(t *testing.T) {
	ct := small(t, "ct")
	ct.Slices = 5
	_, data := collect(t, ct)
	for i, d := range data {
		p := parse(t, d)
		pos, thick, loc := p.floats(dtag.ImagePositionPatient), p.floats(dtag.SliceThickness)[0], p.floats(dtag.SliceLocation)[0]
		if diff := diff([]float64{1, 0, 0, 0, 1, 0}, p.floats(dtag.ImageOrientationPatient)); diff != "" {
			t.Errorf("slice %d orientation: %s", i, diff)
		}
		if want := -float64(i) * thick; pos[2] != want || loc != want {
			t.Errorf("slice %d: z %v, slice location %v, want %v", i, pos[2], loc, want)
		}
		sp := p.floats(dtag.PixelSpacing)
		// The first pixel's centre sits half a pixel inside a field of view centred on 0.
		if want := -float64(ct.Cols)*sp[1]/2 + sp[1]/2; pos[0] != want {
			t.Errorf("slice %d: x %v, want %v", i, pos[0], want)
		}
		if sp[0] != 360.0/48 || p.str(dtag.RescaleIntercept) != "-1024" || p.str(dtag.RescaleSlope) != "1" {
			t.Errorf("slice %d: spacing %v, rescale %s/%s", i, sp, p.str(dtag.RescaleIntercept), p.str(dtag.RescaleSlope))
		}
	}
	mr := small(t, "mr")
	_, data = collect(t, mr)
	sag := parse(t, data[len(data)-1])
	if got := sag.str(dtag.ImageOrientationPatient); got != `0\1\0\0\0\-1` {
		t.Errorf("T1 SAG orientation %s", got)
	}
	if a, b := parse(t, data[0]).str(dtag.FrameOfReferenceUID), sag.str(dtag.FrameOfReferenceUID); a != b || a == "" {
		t.Errorf("frames of reference %q and %q: want one for the study", a, b)
	}
}

func TestPhantomValues(t *testing.T) {
	ct := small(t, "ct")
	ct.Rows, ct.Cols, ct.Slices = 128, 128, 9
	_, data := collect(t, ct)
	px := parse(t, data[2]).pixels() // the chest: body, lungs, spine
	hu := func(x, y int) int { return px[y*128+x] - 1024 }
	// Air in the corner, soft tissue left of the centre, bone in the spine.
	for _, c := range []struct {
		name   string
		x, y   int
		lo, hi int
	}{
		{"air", 2, 2, -1100, -900},
		{"lung", 44, 60, -950, -750},
		{"cortical bone", 64, 75, 600, 800},
		{"marrow", 64, 80, 150, 350},
	} {
		if v := hu(c.x, c.y); v < c.lo || v > c.hi {
			t.Errorf("%s at (%d,%d) is %d HU, want %d..%d", c.name, c.x, c.y, v, c.lo, c.hi)
		}
	}
}

func TestNonASCIINames(t *testing.T) {
	spec := small(t, "cr")
	spec.Patient.Family, spec.Patient.Given = "MÜLLER", "JOSÉ"
	_, data := collect(t, spec)
	p := parse(t, data[0])
	if got := p.str(dtag.SpecificCharacterSet); got != "ISO_IR 192" {
		t.Errorf("character set %q, want ISO_IR 192", got)
	}
	if got := p.str(dtag.PatientName); got != "MÜLLER^JOSÉ" {
		t.Errorf("name %q", got)
	}
	if got := parse(t, collectFirst(t, small(t, "cr"))).str(dtag.SpecificCharacterSet); got != "ISO_IR 100" {
		t.Errorf("ASCII names: character set %q, want ISO_IR 100", got)
	}
}

func collectFirst(t *testing.T, s Spec) []byte {
	t.Helper()
	_, data := collect(t, s)
	return data[0]
}

func TestFileMetaGroup(t *testing.T) {
	d := collectFirst(t, small(t, "ct"))
	if !bytes.Equal(d[:128], make([]byte, 128)) || string(d[128:132]) != "DICM" {
		t.Fatal("no zero preamble and DICM prefix")
	}
	if string(d[132:140]) != "\x02\x00\x00\x00UL\x04\x00" {
		t.Fatalf("first element header % x, want (0002,0000) UL 4", d[132:140])
	}
	glen := int(binary.LittleEndian.Uint32(d[140:]))
	// The group length counts exactly the group 0002 elements that follow it.
	p := 144
	for binary.LittleEndian.Uint16(d[p:]) == 2 {
		vr := string(d[p+4 : p+6])
		if vr == "OB" {
			p += 12 + int(binary.LittleEndian.Uint32(d[p+8:]))
		} else {
			p += 8 + int(binary.LittleEndian.Uint16(d[p+6:]))
		}
	}
	if p-144 != glen {
		t.Fatalf("group length %d, group is %d bytes", glen, p-144)
	}
	// Elements are in ascending tag order throughout the dataset.
	prev := uint32(0)
	for q := 132; q < len(d); {
		tg := uint32(binary.LittleEndian.Uint16(d[q:]))<<16 | uint32(binary.LittleEndian.Uint16(d[q+2:]))
		if tg <= prev {
			t.Fatalf("tag %08x after %08x", tg, prev)
		}
		prev = tg
		if longVR[string(d[q+4:q+6])] {
			q += 12 + int(binary.LittleEndian.Uint32(d[q+8:]))
		} else {
			q += 8 + int(binary.LittleEndian.Uint16(d[q+6:]))
		}
	}
	if prev != uint32(tPixelData) {
		t.Fatalf("last element %08x, want pixel data", prev)
	}
}

func TestUID(t *testing.T) {
	re := regexp.MustCompile(`^2\.25\.(0|[1-9][0-9]*)$`)
	seen := map[string]bool{}
	for _, parts := range [][]string{{"1", "ct", "study"}, {"1", "ct", "studyx"}, {"1c", "t", "study"}, {"1", "ctstudy"}, {"2", "ct", "study"}} {
		u := UID(parts...)
		if !re.MatchString(u) || len(u) > 64 {
			t.Errorf("UID(%q) = %q: not a 2.25 UID of at most 64 characters", parts, u)
		}
		if u != UID(parts...) {
			t.Errorf("UID(%q) is not deterministic", parts)
		}
		if seen[u] {
			t.Errorf("UID(%q) collides", parts)
		}
		seen[u] = true
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Spec)
	}{
		{"unknown preset", func(s *Spec) { s.Preset = "pet" }},
		{"tiny rows", func(s *Spec) { s.Rows = 8 }},
		{"huge cols", func(s *Spec) { s.Cols = 5000 }},
		{"no slices", func(s *Spec) { s.Slices = 0 }},
		{"bad study date", func(s *Spec) { s.StudyDate = "2026-03-01" }},
		{"impossible date", func(s *Spec) { s.StudyDate = "20260230" }},
		{"bad birth date", func(s *Spec) { s.Patient.BirthDate = "1958" }},
		{"bad sex", func(s *Spec) { s.Patient.Sex = "X" }},
		{"caret in family name", func(s *Spec) { s.Patient.Family = "DOE^JR" }},
		{"backslash in id", func(s *Spec) { s.Patient.ID = `A\B` }},
		{"long accession", func(s *Spec) { s.Accession = "12345678901234567" }},
		{"control character", func(s *Spec) { s.Description = "CT\nCHEST" }},
		{"trailing space", func(s *Spec) { s.Patient.Issuer = "HOSP " }},
		{"long name", func(s *Spec) { s.Patient.Family = strings.Repeat("A", 40); s.Patient.Given = strings.Repeat("B", 30) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := small(t, "ct")
			tc.edit(&s)
			if err := s.Validate(); !errors.Is(err, ErrSpec) {
				t.Fatalf("Validate = %v, want ErrSpec", err)
			}
			if err := Instances(s, func(string, []byte) error { t.Fatal("generated an invalid spec"); return nil }); !errors.Is(err, ErrSpec) {
				t.Fatalf("Instances = %v, want ErrSpec", err)
			}
		})
	}
	for _, p := range Presets {
		s, err := DefaultSpec(p)
		if err != nil || s.Validate() != nil {
			t.Errorf("DefaultSpec(%q): %v, %v", p, err, s.Validate())
		}
	}
	if _, err := DefaultSpec("pet"); !errors.Is(err, ErrSpec) {
		t.Errorf("DefaultSpec(pet) = %v, want ErrSpec", err)
	}
	s := small(t, "ct")
	s.Patient.BirthDate, s.Patient.Sex, s.Referrer, s.Institution = "", "", "", ""
	if err := s.Validate(); err != nil {
		t.Errorf("empty Type 2 values: %v", err)
	}
}

func TestInstancesStopsOnError(t *testing.T) {
	before := runtime.NumGoroutine()
	stop := errors.New("stop")
	s := small(t, "ct")
	s.Slices = 50
	calls := 0
	err := Instances(s, func(string, []byte) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("err %v after %d calls, want stop after 3", err, calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left running, %d before", n, before)
	}
}

func TestWriteReportsIOErrors(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(filepath.Join(blocker, "sub"), small(t, "cr")); err == nil {
		t.Fatal("Write under a regular file succeeded")
	}
}

// TestDcmtkAcceptsFiles checks the files with dcmtk, software nobody here
// wrote, when it is installed.
func TestDcmtkAcceptsFiles(t *testing.T) {
	if _, err := exec.LookPath("dcmftest"); err != nil {
		t.Skip("dcmtk not installed (apt-get install dcmtk)")
	}
	for _, preset := range Presets {
		t.Run(preset, func(t *testing.T) {
			st, err := Write(t.TempDir(), small(t, preset))
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("dcmftest", st.Files[0].Path).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "yes:") {
				t.Fatalf("dcmftest: %s %v", out, err)
			}
			out, err = exec.Command("dcmdump", "-E", "+L", "-dc", st.Files[1].Path).CombinedOutput()
			if err != nil {
				t.Fatalf("dcmdump: %s %v", out, err)
			}
			for _, want := range []string{
				"(0002,0010) UI =LittleEndianExplicit",
				"(0010,0010) PN [DOE^JANE]",
				"(0010,0021) LO [RURAL-HOSP]",
				"(0020,000d) UI [" + st.UID,
				"(0028,0010) US 48",
				"(7fe0,0010) OW",
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("dcmdump output lacks %q", want)
				}
			}
			if strings.Contains(string(out), "W: ") || strings.Contains(string(out), "E: ") {
				t.Errorf("dcmdump warned:\n%s", out)
			}
		})
	}
}

// TestDciodvfyAcceptsFiles checks every preset against the IODs with
// dicom3tools' dciodvfy when it is installed: no errors allowed.
func TestDciodvfyAcceptsFiles(t *testing.T) {
	if _, err := exec.LookPath("dciodvfy"); err != nil {
		t.Skip("dicom3tools not installed (apt-get install dicom3tools)")
	}
	for _, preset := range Presets {
		t.Run(preset, func(t *testing.T) {
			st, err := Write(t.TempDir(), small(t, preset))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []File{st.Files[0], st.Files[len(st.Files)-1]} {
				out, _ := exec.Command("dciodvfy", f.Path).CombinedOutput()
				for _, line := range strings.Split(string(out), "\n") {
					if strings.HasPrefix(line, "Error") {
						t.Errorf("%s: %s", filepath.Base(f.Path), line)
					}
				}
			}
		})
	}
}

func BenchmarkCTSlice(b *testing.B) {
	s, err := DefaultSpec("ct")
	if err != nil {
		b.Fatal(err)
	}
	s.Slices = 8
	b.SetBytes(8 * 525000)
	for b.Loop() {
		if err := Instances(s, func(string, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// diff describes how got differs from want, or returns "" when they are equal.
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return fmt.Sprintf("want %+v\ngot  %+v", want, got)
}
