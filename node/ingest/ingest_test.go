package ingest

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/archive"
)

// part10 builds a Part 10 file: the file meta (explicit VR little endian)
// with the given transfer syntax and media storage class, then body.
func part10(ts, class string, body []byte) []byte {
	var meta []byte
	meta = elem(meta, 0x0002, 0x0002, "UI", class)
	meta = elem(meta, 0x0002, 0x0010, "UI", ts)
	out := append(make([]byte, 128), "DICM"...)
	out = append(out, meta...)
	return append(out, body...)
}

func elem(b []byte, group, el uint16, vr, v string) []byte {
	if len(v)%2 == 1 {
		v += "\x00"
	}
	b = binary.LittleEndian.AppendUint16(b, group)
	b = binary.LittleEndian.AppendUint16(b, el)
	b = append(b, vr...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func longElem(b []byte, group, el uint16, vr string, length uint32) []byte {
	b = binary.LittleEndian.AppendUint16(b, group)
	b = binary.LittleEndian.AppendUint16(b, el)
	b = append(b, vr...)
	b = append(b, 0, 0)
	return binary.LittleEndian.AppendUint32(b, length)
}

func synthFiles(t testing.TB, preset string, n int) [][]byte {
	t.Helper()
	spec, _ := synth.DefaultSpec(preset)
	spec.Slices, spec.Rows, spec.Cols = n, 64, 64
	var out [][]byte
	if err := synth.Instances(spec, func(_ string, d []byte) error { out = append(out, d); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func hostile(t testing.TB) map[string][]byte {
	valid := synthFiles(t, "ct", 1)[0]
	var nested []byte
	for range 100 {
		nested = longElem(nested, 0x0040, 0xA730, "SQ", 0xFFFFFFFF)
		nested = append(nested, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	badUID := elem(nil, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2")
	badUID = elem(badUID, 0x0008, 0x0018, "UI", "../../etc/passwd")
	badUID = elem(badUID, 0x0020, 0x000D, "UI", "1.2.3")
	badUID = elem(badUID, 0x0020, 0x000E, "UI", "1.2.3.4")
	return map[string][]byte{
		"huge declared length": part10("1.2.840.10008.1.2.1", "1.2.3", longElem(nil, 0x0010, 0x0010, "OB", 0xFFFFFFF0)),
		"4 GiB pixel data":     part10("1.2.840.10008.1.2.1", "1.2.3", longElem(elem(nil, 0x0008, 0x0016, "UI", "1.2.3"), 0x7FE0, 0x0010, "OW", 0xFFFFFFF0)),
		"truncated":            valid[:len(valid)/2],
		"truncated header":     valid[:140],
		"deep nesting":         part10("1.2.840.10008.1.2.1", "1.2.3", nested),
		"path-like UID":        part10("1.2.840.10008.1.2.1", "1.2.3", badUID),
		"deflated":             part10("1.2.840.10008.1.2.1.99", "1.2.3", []byte{1, 2, 3, 4, 5, 6, 7, 8}),
		"bad VR":               part10("1.2.840.10008.1.2.1", "1.2.3", []byte{8, 0, 0x16, 0, 'u', '!', 2, 0, '1', 0}),
	}
}

func TestParseRejectsHostileInputWithinMemoryBound(t *testing.T) {
	inputs := hostile(t)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for name, data := range inputs {
		_, err := Parse(data)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidUID) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v wraps no rejection sentinel", name, err)
		}
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("parsing %d hostile files allocated %d MiB, bound is 64 MiB", len(inputs), alloc>>20)
	}
}

func TestParseValid(t *testing.T) {
	for _, preset := range []string{"ct", "mr", "cr"} {
		data := synthFiles(t, preset, 1)[0]
		m, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", preset, err)
		}
		if m.PatientID != "MRN0001" || m.IssuerOfPatientID != "RURAL-HOSP" || m.PatientName != "DOE^JANE" ||
			m.TransferSyntaxUID != "1.2.840.10008.1.2.1" || m.Modality != strings.ToUpper(preset) || m.InstanceNumber != 1 {
			t.Errorf("%s: %+v", preset, m)
		}
	}
	if _, err := Parse([]byte("MZ\x90\x00 a viewer program")); !errors.Is(err, ErrNotDICOM) {
		t.Errorf("non-DICOM: %v", err)
	}
	if _, err := Parse(part10("1.2.840.10008.1.2.1", mediaDirectory, elem(nil, 0x0004, 0x1130, "CS", "CD"))); !errors.Is(err, ErrDirectory) {
		t.Errorf("DICOMDIR: %v", err)
	}
}

func newArchive(t *testing.T) *archive.Archive {
	t.Helper()
	id, _ := crypto.GenerateIdentity(rand.Reader)
	a, err := archive.Open(archive.Config{Dir: t.TempDir(), Owner: id, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestRunMixedMedia(t *testing.T) {
	in := t.TempDir()
	write := func(name string, data []byte) {
		p := filepath.Join(in, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A CD copied to disk: a DICOMDIR, ISO 9660 names without extensions,
	// a viewer program and a README.
	ct := synthFiles(t, "ct", 3)
	for i, d := range ct {
		write("DICOM/ST000001/IM00000"+string(rune('1'+i)), d)
	}
	write("DICOMDIR", part10("1.2.840.10008.1.2.1", mediaDirectory, elem(nil, 0x0004, 0x1130, "CS", "CD")))
	write("VIEWER.EXE", []byte("MZ\x90\x00 not dicom"))
	write("README.TXT", []byte("open VIEWER.EXE"))
	write("broken.dcm", hostile(t)["huge declared length"])

	// A zip with two MR instances and an entry that expands past the limit.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for i, d := range synthFiles(t, "mr", 1)[:2] {
		w, _ := zw.Create("mr/" + string(rune('a'+i)) + ".dcm")
		w.Write(d)
	}
	w, _ := zw.Create("bomb.dcm")
	w.Write(make([]byte, 8<<20))
	zw.Close()
	write("transfer.zip", zb.Bytes())

	cfg := DefaultConfig()
	cfg.Archive = newArchive(t)
	cfg.QuarantineDir = filepath.Join(t.TempDir(), "rejected")
	cfg.MaxFileBytes = 4 << 20
	var last Progress
	cfg.Progress = func(p Progress) { last = p }
	rep, err := Run(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 5 || rep.Skipped != 3 || len(rep.Rejected) != 2 || rep.OK() {
		t.Fatalf("report: stored %d skipped %d rejected %v", rep.Stored, rep.Skipped, rep.Rejected)
	}
	if last.Done != last.Files || last.Files != 10 {
		t.Errorf("progress ended at %d/%d, want 10/10", last.Done, last.Files)
	}
	for _, r := range rep.Rejected {
		if r.KeptAt == "" {
			t.Errorf("%s was not kept aside", r.Path)
			continue
		}
		if _, err := os.Stat(r.KeptAt); err != nil {
			t.Errorf("kept copy of %s: %v", r.Path, err)
		}
	}
	reasons, _ := filepath.Glob(filepath.Join(cfg.QuarantineDir, "*", "reasons.txt"))
	if len(reasons) != 1 {
		t.Fatalf("reasons.txt: %v", reasons)
	}
	if len(rep.Studies) != 2 {
		t.Errorf("%d studies committed, want 2", len(rep.Studies))
	}

	// Again: everything is a duplicate, nothing changes.
	rep2, err := Run(context.Background(), cfg, in)
	if err != nil || rep2.Stored != 0 || rep2.Duplicates != 5 {
		t.Fatalf("re-ingest: %+v %v", rep2, err)
	}
	st, _ := cfg.Archive.Study(rep.Studies[0].UID)
	if st.Version != 1 {
		t.Errorf("re-ingest made version %d", st.Version)
	}
}

func TestRunCancelledCommitsNothing(t *testing.T) {
	in := t.TempDir()
	for i, d := range synthFiles(t, "ct", 4) {
		os.WriteFile(filepath.Join(in, string(rune('a'+i))+".dcm"), d, 0o644)
	}
	cfg := DefaultConfig()
	cfg.Archive = newArchive(t)
	cfg.QuarantineDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, cfg, in); err == nil {
		t.Fatal("a cancelled run reported success")
	}
	if s, _ := cfg.Archive.Studies(archive.Query{}); len(s) != 0 {
		t.Fatalf("a cancelled run committed %d studies", len(s))
	}
}

func FuzzParse(f *testing.F) {
	for _, d := range hostile(f) {
		f.Add(d)
	}
	f.Add(synthFiles(f, "cr", 1)[0][:4096])
	small := synthFiles(f, "ct", 1)[0]
	f.Add(small[:1024])
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		for _, u := range []string{m.SOPClassUID, m.SOPInstanceUID, m.SeriesInstanceUID, m.StudyInstanceUID} {
			if validUID(u) != nil {
				t.Fatalf("accepted invalid UID %q", u)
			}
		}
	})
}
