package ingest

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/suyashkumar/dicom"
)

var update = flag.Bool("update", false, "rewrite testdata/hostile and the fuzz seed corpus")

// memoryBound is what feeding every hostile input may allocate in total.
const memoryBound = 64 << 20

// zeroBomb writes a zip whose entry name holds a DICOM header followed by n
// zero bytes (or just n zero bytes when header is false), compressed about
// 1000 to 1, without holding the n bytes in memory.
func zeroBomb(t testing.TB, path, name string, header bool, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	if header {
		i := ct(99)
		i.tail = explicitLE.header(nil, 0x0029, 0x1010, "OB", uint32(n))
		b := i.bytes()
		w.Write(b[:len(b)-44]) // without the pixel data
	}
	chunk := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(chunk)) {
		w.Write(chunk[:min(left, int64(len(chunk)))])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHostileInputStaysWithinMemoryBound(t *testing.T) {
	inputs := hostile()
	in := t.TempDir()
	for _, h := range []struct {
		name string
		data []byte
	}{
		{"huge-length-184.dcm", bomb184()},
		{"truncated.dcm", ct(1).bytes()[:400]},
		{"deep-nesting.dcm", func() []byte { i := ct(1); i.head = nested(explicitLE, 10000); return i.bytes() }()},
		{"pixel-4gib.dcm", func() []byte {
			i := ct(1)
			i.pixels = explicitLE.header(nil, 0x7FE0, 0x0010, "OW", 0xFFFFFFF0)
			return i.bytes()
		}()},
		{"lie.zip", lyingZip(t, append(ct(2).bytes(), make([]byte, 64<<20)...), 4096)},
	} {
		os.WriteFile(filepath.Join(in, h.name), h.data, 0o644)
	}
	zeroBomb(t, filepath.Join(in, "dicom-bomb.zip"), "bomb.dcm", true, 256<<20)
	zeroBomb(t, filepath.Join(in, "zero-bomb.zip"), "zeros.dcm", false, 256<<20)
	defaults := testConfig(t)
	capped := testConfig(t)
	capped.MaxFileBytes, capped.MaxZipBytes, capped.MaxZipRatio = 32<<20, 1<<40, 1<<30

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, h := range inputs {
		if _, err := Parse(h.data); err == nil {
			t.Errorf("%s: accepted", h.name)
		}
	}
	var reps []Report
	for _, cfg := range []Config{defaults, capped} {
		rep, err := Run(context.Background(), cfg, in)
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	runtime.ReadMemStats(&after)

	total := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d hostile inputs parsed and two runs over %d files: %.1f MiB allocated in total, heap grew %.1f MiB",
		len(inputs), len(reps[0].Rejected)+reps[0].Skipped, float64(total)/(1<<20), (float64(after.HeapAlloc)-float64(before.HeapAlloc))/(1<<20))
	if total > memoryBound {
		t.Errorf("allocated %d MiB, bound is %d MiB", total>>20, memoryBound>>20)
	}
	for i, rep := range reps {
		// The zip of zeros is not DICOM at all and is skipped; the rest is
		// rejected.
		if rep.Stored != 0 || rep.Skipped != 1 || len(rep.Rejected) != 6 {
			t.Errorf("run %d: stored %d, skipped %d, rejected %v", i, rep.Stored, rep.Skipped, rep.Rejected)
		}
	}
}

// testdata/hostile keeps a few crafted files; the name says what each must
// be rejected as.
var hostileFiles = map[string]error{
	"huge-length-184.dcm": ErrMalformed,
	"truncated.dcm":       ErrMalformed,
	"deep-nesting.dcm":    ErrTooLarge,
	"pixel-4gib.dcm":      ErrMalformed,
	"path-uid.dcm":        ErrInvalidUID,
	"bomb.zip":            ErrTooLarge,
}

func writeHostileFiles(t *testing.T) {
	dir := filepath.Join("testdata", "hostile")
	os.MkdirAll(dir, 0o755)
	px := ct(1)
	px.pixels = explicitLE.header(nil, 0x7FE0, 0x0010, "OW", 0xFFFFFFF0)
	deep := ct(1)
	deep.head = nested(explicitLE, 64)
	path := ct(1)
	path.sop = "../../etc/passwd"
	files := map[string][]byte{
		"huge-length-184.dcm": bomb184(),
		"truncated.dcm":       ct(1).bytes()[:400],
		"deep-nesting.dcm":    deep.bytes(),
		"pixel-4gib.dcm":      px.bytes(),
		"path-uid.dcm":        path.bytes(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	zeroBomb(t, filepath.Join(dir, "bomb.zip"), "bomb.dcm", true, 64<<20)
}

func TestHostileTestdata(t *testing.T) {
	if *update {
		writeHostileFiles(t)
	}
	cfg := testConfig(t)
	rep, err := Run(context.Background(), cfg, filepath.Join("testdata", "hostile"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Rejected {
		name := filepath.Base(r.Path)
		if i := bytes.IndexByte([]byte(r.Path), '!'); i >= 0 {
			name = filepath.Base(r.Path[:i])
		}
		want, ok := hostileFiles[name]
		if !ok || !errors.Is(r.Err, want) {
			t.Errorf("%s: got %v, want %v", name, r.Err, want)
		}
		got = append(got, name)
	}
	slices.Sort(got)
	var want []string
	for name := range hostileFiles {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) || rep.Stored != 0 {
		t.Errorf("rejected %v, stored %d; want %v rejected", got, rep.Stored, want)
	}
}

// fuzzSeeds are small valid and hostile inputs.
func fuzzSeeds() map[string][]byte {
	seeds := map[string][]byte{}
	for _, ts := range []string{tsExplicitLE, tsImplicitLE, tsExplicitBE} {
		i := ct(1)
		i.ts = ts
		i.head = nested(encOf(ts), 2)
		seeds["valid-"+ts] = i.bytes()
	}
	enc := ct(2)
	enc.ts = tsJPEG
	e := explicitLE
	enc.pixels = e.seqEnd(e.item(e.item(e.header(nil, 0x7FE0, 0x0010, "OB", undefinedLength), 0), 0))
	seeds["encapsulated"] = enc.bytes()
	seeds["dicomdir"] = dicomdir(`DICOM\IM1`, `DICOM\IM2`)
	for _, h := range hostile() {
		if len(h.data) <= 4096 {
			seeds["hostile-"+h.name] = h.data
		}
	}
	return seeds
}

func writeFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	os.MkdirAll(dir, 0o755)
	n := 0
	for name, data := range fuzzSeeds() {
		clean := []byte(name)
		for i, c := range clean {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				clean[i] = '-'
			}
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, string(clean)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	t.Logf("wrote %d seeds", n)
}

func TestFuzzSeeds(t *testing.T) {
	if *update {
		writeFuzzSeeds(t)
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzParse"))
	if err != nil || len(entries) < 10 {
		t.Fatalf("seed corpus: %d files, %v", len(entries), err)
	}
}

// FuzzParse checks that Parse never panics, that anything it accepts has
// valid UIDs, and that the parser never panics on what the guard lets
// through (Parse would hide such a panic as a rejection).
func FuzzParse(f *testing.F) {
	for _, d := range fuzzSeeds() {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("%T is not a *RejectError: %v", err, err)
			}
		} else {
			for _, u := range []string{m.SOPClassUID, m.SOPInstanceUID, m.SeriesInstanceUID, m.StudyInstanceUID, m.TransferSyntaxUID} {
				if err := validUID(u); err != nil {
					t.Fatalf("accepted an invalid UID: %v", err)
				}
			}
		}
		l, err := guard(data)
		if err != nil {
			return
		}
		if len(l.parse) < metaStart || len(l.parse) > len(data) {
			t.Fatalf("parser input of %d bytes from %d", len(l.parse), len(data))
		}
		dicom.Parse(bytes.NewReader(l.parse), int64(len(l.parse)), nil,
			dicom.SkipPixelData(), dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	})
}
