package ingest

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/archive"
)

func newArchive(t testing.TB) *archive.Archive {
	t.Helper()
	id, err := crypto.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(archive.Config{Dir: t.TempDir(), Owner: id, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Archive = newArchive(t)
	cfg.QuarantineDir = filepath.Join(t.TempDir(), "rejected")
	return cfg
}

// tree writes files (slash-separated names) below a new folder.
func tree(t testing.TB, files map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func zipOf(t testing.TB, entries ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i < len(entries); i += 2 {
		w, err := zw.Create(entries[i].(string))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(entries[i+1].([]byte))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mr(n int) inst {
	i := ct(n)
	i.modality, i.class = "MR", "1.2.840.10008.5.1.4.1.1.4"
	i.study, i.series = "1.2.826.0.1.3680043.10.3.2", "1.2.826.0.1.3680043.10.4.2"
	return i
}

// kinds lists the sentinels of rejections, sorted.
func kinds(rej []Rejection) []string {
	var out []string
	for _, r := range rej {
		var re *RejectError
		if !errors.As(r.Err, &re) {
			out = append(out, "not a *RejectError")
			continue
		}
		out = append(out, errors.Unwrap(re).Error())
	}
	slices.Sort(out)
	return out
}

func TestRunMixedMedia(t *testing.T) {
	// A CD copied to disk: a DICOMDIR, ISO 9660 names without extensions, a
	// viewer and its files; a broken instance; a zip with two MR instances
	// and an entry that expands past the per-file limit.
	in := tree(t, map[string][]byte{
		"DICOMDIR":                dicomdir(`DICOM\ST000001\IM000001`, `DICOM\ST000001\IM000002`, `DICOM\ST000001\IM000003`),
		"DICOM/ST000001/IM000001": ct(1).bytes(),
		"DICOM/ST000001/IM000002": ct(2).bytes(),
		"DICOM/ST000001/IM000003": ct(3).bytes(),
		"VIEWER.EXE":              []byte("MZ\x90\x00 not dicom"),
		"README.TXT":              []byte("Open VIEWER.EXE to see the images."),
		"AUTORUN.INF":             []byte("[autorun]\r\nopen=VIEWER.EXE\r\n"),
		"broken.dcm":              bomb184(),
		"transfer.zip": zipOf(t,
			"mr/a.dcm", mr(1).bytes(),
			"mr/b.dcm", mr(2).bytes(),
			"big.dcm", append(mr(3).bytes(), make([]byte, 8<<20)...)),
	})
	cfg := testConfig(t)
	cfg.MaxFileBytes = 4 << 20
	var mu sync.Mutex
	var last Progress
	calls := 0
	cfg.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Done < last.Done || p.Bytes < last.Bytes {
			t.Errorf("progress went back: %+v after %+v", p, last)
		}
		last = p
		calls++
	}
	rep, err := Run(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 5 || rep.Duplicates != 0 || rep.Skipped != 3 || rep.OK() {
		t.Fatalf("stored %d, duplicates %d, skipped %d, rejected %v", rep.Stored, rep.Duplicates, rep.Skipped, rep.Rejected)
	}
	if got, want := kinds(rep.Rejected), []string{"malformed DICOM", "too large"}; !slices.Equal(got, want) {
		t.Errorf("rejections %v, want %v", got, want)
	}
	if last.Files != 10 || last.Done != 10 || calls != 10 {
		t.Errorf("progress ended at %d/%d after %d calls, want 10/10 after 10", last.Done, last.Files, calls)
	}
	for _, r := range rep.Rejected {
		if r.KeptAt == "" {
			t.Errorf("%s was not kept", r.Path)
		} else if _, err := os.Stat(r.KeptAt); err != nil {
			t.Errorf("kept copy of %s: %v", r.Path, err)
		}
	}
	if len(rep.Studies) != 2 || rep.Studies[0].UID > rep.Studies[1].UID {
		t.Fatalf("studies %+v, want 2 in UID order", rep.Studies)
	}
	if rep.Studies[0].Instances+rep.Studies[1].Instances != 5 {
		t.Errorf("studies hold %d and %d instances", rep.Studies[0].Instances, rep.Studies[1].Instances)
	}

	// Again: everything is a duplicate and no study changes.
	cfg.Progress = nil
	rep2, err := Run(context.Background(), cfg, in)
	if err != nil || rep2.Stored != 0 || rep2.Duplicates != 5 || len(rep2.Studies) != 2 {
		t.Fatalf("re-ingest: %+v %v", rep2, err)
	}
	for _, s := range rep2.Studies {
		if s.Version != 1 {
			t.Errorf("re-ingest made study %s version %d", s.UID, s.Version)
		}
	}
}

func TestRunQuarantine(t *testing.T) {
	hugePixels := ct(9)
	hugePixels.tail = explicitLE.header(nil, 0x7FE0, 0x0010, "OW", 0xFFFFFFF0)
	in := tree(t, map[string][]byte{
		"a/IM1":       bomb184(),
		"b/IM1":       hugePixels.bytes(),
		"reasons.txt": ct(1).bytes()[:300],
		"big.dcm":     append(ct(2).bytes(), make([]byte, 4096)...),
		"ok.dcm":      ct(3).bytes(),
	})
	cfg := testConfig(t)
	cfg.MaxFileBytes = 4096
	rep, err := Run(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 1 || len(rep.Rejected) != 4 {
		t.Fatalf("stored %d, rejected %v", rep.Stored, rep.Rejected)
	}
	runs, _ := filepath.Glob(filepath.Join(cfg.QuarantineDir, "*"))
	if len(runs) != 1 {
		t.Fatalf("quarantine holds %v, want one run folder", runs)
	}
	var names []string
	for _, r := range rep.Rejected {
		if r.Path == filepath.Join(in, "big.dcm") {
			if r.KeptAt != r.Path || !errors.Is(r.Err, ErrTooLarge) {
				t.Errorf("too large file: kept at %q, err %v; want left in place", r.KeptAt, r.Err)
			}
			continue
		}
		if filepath.Dir(r.KeptAt) != runs[0] {
			t.Errorf("%s kept at %s, outside %s", r.Path, r.KeptAt, runs[0])
			continue
		}
		orig, _ := os.ReadFile(r.Path)
		kept, _ := os.ReadFile(r.KeptAt)
		if !bytes.Equal(orig, kept) {
			t.Errorf("kept copy of %s differs", r.Path)
		}
		names = append(names, filepath.Base(r.KeptAt))
	}
	slices.Sort(names)
	if want := []string{"IM1", "IM1~2", "reasons.txt~2"}; !slices.Equal(names, want) {
		t.Errorf("kept as %v, want %v", names, want)
	}
	reasons, err := os.ReadFile(filepath.Join(runs[0], "reasons.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(reasons)), "\n")
	if len(lines) != 4 {
		t.Fatalf("reasons.txt:\n%s", reasons)
	}
	for _, l := range lines {
		if f := strings.Split(l, "\t"); len(f) != 3 || !strings.HasPrefix(f[1], in) || f[2] == "" {
			t.Errorf("reasons line %q is not name, path, reason", l)
		}
	}
}

func TestRunDICOMDIR(t *testing.T) {
	// The DICOMDIR names files in upper case, as ISO 9660 does; the copy on
	// disk has them in lower case, one with a version suffix.
	media := map[string][]byte{
		"DICOMDIR":               dicomdir(`DICOM\ST1\IM1`, `DICOM\ST1\IM2`, `DICOM\ST1\IM3`),
		"dicom/st1/im1":          ct(1).bytes(),
		"dicom/st1/im2;1":        ct(2).bytes(),
		"dicom/st1/IM3.":         ct(3).bytes(),
		"dicom/st1/unreferenced": ct(4).bytes(),
		"viewer/readme.txt":      []byte("viewer"),
	}
	t.Run("the DICOMDIR itself", func(t *testing.T) {
		in := tree(t, media)
		cfg := testConfig(t)
		var last Progress
		cfg.Progress = func(p Progress) { last = p }
		rep, err := Run(context.Background(), cfg, filepath.Join(in, "DICOMDIR"))
		if err != nil {
			t.Fatal(err)
		}
		// Only what the DICOMDIR references; the DICOMDIR counts as nothing.
		if rep.Stored != 3 || rep.Skipped != 0 || !rep.OK() || last.Files != 3 {
			t.Fatalf("stored %d, skipped %d, rejected %v, files %d", rep.Stored, rep.Skipped, rep.Rejected, last.Files)
		}
		if cfg.Archive.HasInstance(ct(4).study, ct(4).sop) {
			t.Error("stored a file the DICOMDIR does not reference")
		}
	})
	t.Run("the media folder", func(t *testing.T) {
		in := tree(t, media)
		cfg := testConfig(t)
		var order []string
		cfg.Workers = 1
		cfg.Progress = func(p Progress) { order = append(order, filepath.Base(p.Path)) }
		rep, err := Run(context.Background(), cfg, in)
		if err != nil {
			t.Fatal(err)
		}
		// Everything, the referenced files first; the DICOMDIR is neither
		// stored nor skipped.
		if rep.Stored != 4 || rep.Skipped != 1 || !rep.OK() {
			t.Fatalf("stored %d, skipped %d, rejected %v", rep.Stored, rep.Skipped, rep.Rejected)
		}
		if want := []string{"im1", "im2;1", "IM3."}; !slices.Equal(order[:3], want) {
			t.Errorf("order %v, want the DICOMDIR's %v first", order, want)
		}
	})
	t.Run("missing and unsafe references", func(t *testing.T) {
		outside := t.TempDir()
		os.WriteFile(filepath.Join(outside, "SECRET"), ct(5).bytes(), 0o644)
		in := tree(t, map[string][]byte{
			"cd/DICOMDIR": dicomdir(`IM1`, `IM2`, `..\`+filepath.Base(outside)+`\SECRET`, `SUB\..\..\IM1`, `LINK`),
			"cd/IM1":      ct(1).bytes(),
		})
		if err := os.Symlink(filepath.Join(outside, "SECRET"), filepath.Join(in, "cd", "LINK")); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t)
		rep, err := Run(context.Background(), cfg, filepath.Join(in, "cd", "DICOMDIR"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := kinds(rep.Rejected), []string{"malformed DICOM", "malformed DICOM", "referenced file missing", "referenced file missing"}; rep.Stored != 1 || !slices.Equal(got, want) {
			t.Fatalf("stored %d, rejected %v", rep.Stored, rep.Rejected)
		}
		if cfg.Archive.HasInstance(ct(5).study, ct(5).sop) {
			t.Error("followed a reference out of the media folder")
		}
		for _, r := range rep.Rejected {
			if errors.Is(r.Err, ErrMissing) && r.KeptAt != "" {
				t.Errorf("missing file %s kept at %s", r.Path, r.KeptAt)
			}
			if !strings.HasPrefix(r.Path, filepath.Join(in, "cd")) {
				t.Errorf("rejection path %s is outside the media", r.Path)
			}
		}
	})
	t.Run("a broken DICOMDIR", func(t *testing.T) {
		m := map[string][]byte{}
		for k, v := range media {
			m[k] = v
		}
		m["DICOMDIR"] = dicomdir(`DICOM\ST1\IM1`)[:300]
		in := tree(t, m)
		cfg := testConfig(t)
		rep, err := Run(context.Background(), cfg, filepath.Join(in, "DICOMDIR"))
		if err != nil {
			t.Fatal(err)
		}
		// The DICOMDIR is rejected and the folder walked instead.
		if rep.Stored != 4 || len(rep.Rejected) != 1 || !strings.HasSuffix(rep.Rejected[0].Path, "DICOMDIR") {
			t.Fatalf("stored %d, rejected %v", rep.Stored, rep.Rejected)
		}
	})
}

func TestRunZip(t *testing.T) {
	escape := filepath.Join(t.TempDir(), "x", "y")
	in := tree(t, map[string][]byte{
		"a.zip": zipOf(t,
			"../../../../../../../../../"+escape+"/slip.dcm", bomb184(),
			"/abs/ok.dcm", ct(1).bytes(),
			`..\..\win.dcm`, ct(2).bytes()[:200],
			"DICOMDIR", dicomdir(`IM1`),
			"inner.zip", zipOf(t, "c.dcm", ct(3).bytes()),
			"dir/", []byte{}),
		"notazip.zip": []byte("PK but not really"),
	})
	cfg := testConfig(t)
	rep, err := Run(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(rep.Rejected), []string{"malformed DICOM", "malformed DICOM", "malformed DICOM"}; rep.Stored != 1 || rep.Skipped != 1 || !slices.Equal(got, want) {
		t.Fatalf("stored %d, skipped %d, rejected %v", rep.Stored, rep.Skipped, rep.Rejected)
	}
	if _, err := os.Stat(escape); !os.IsNotExist(err) {
		t.Errorf("something was written at %s", escape)
	}
	for _, r := range rep.Rejected {
		if r.KeptAt == "" || !strings.HasPrefix(r.KeptAt, cfg.QuarantineDir) && r.KeptAt != filepath.Join(in, "notazip.zip") {
			t.Errorf("%s kept at %q", r.Path, r.KeptAt)
		}
	}
}

func TestRunZipBombs(t *testing.T) {
	// A DICOM header, then an OB element of n zero bytes: passes the first
	// look, compresses about 1000 to 1. Each is another instance.
	entry := 0
	zeros := func(n int) []byte {
		entry++
		i := ct(entry)
		i.tail = explicitLE.header(nil, 0x0029, 0x1010, "OB", uint32(n))
		b := i.bytes()
		return append(b[:len(b)-44], make([]byte, n)...)
	}
	tests := []struct {
		name  string
		cfg   func(*Config)
		data  func() []byte
		want  []string
		store int
	}{
		{"entry past the per-file limit", func(c *Config) { c.MaxFileBytes = 1 << 20; c.MaxZipRatio = 1 << 20 },
			func() []byte { return zipOf(t, "a.dcm", zeros(2<<20), "b.dcm", ct(2).bytes()) },
			[]string{"too large"}, 1},
		{"archive past the ratio", func(c *Config) {},
			func() []byte { return zipOf(t, "a.dcm", zeros(70<<20), "b.dcm", zeros(70<<20), "c.dcm", ct(2).bytes()) },
			[]string{"too large", "too large"}, 1},
		{"archive past the total", func(c *Config) { c.MaxZipBytes = 3 << 20; c.MaxZipRatio = 1 << 20 },
			func() []byte {
				return zipOf(t, "a.dcm", zeros(1<<20), "b.dcm", zeros(1<<20), "c.dcm", zeros(1<<20), "d.dcm", zeros(1<<20))
			},
			[]string{"too large", "too large"}, 2},
		{"too many entries", func(c *Config) { c.MaxZipEntries = 2 },
			func() []byte { return zipOf(t, "a.dcm", ct(1).bytes(), "b.dcm", ct(2).bytes(), "c.dcm", ct(3).bytes()) },
			[]string{"too large"}, 0},
		{"entry lying about its size", func(c *Config) {}, func() []byte { return lyingZip(t, zeros(1<<20), 4096) },
			[]string{"malformed DICOM"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tree(t, map[string][]byte{"bomb.zip": tt.data()})
			cfg := testConfig(t)
			tt.cfg(&cfg)
			rep, err := Run(context.Background(), cfg, in)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(rep.Rejected); !slices.Equal(got, tt.want) || rep.Stored != tt.store {
				t.Fatalf("stored %d, rejected %v; want %d and %v", rep.Stored, rep.Rejected, tt.store, tt.want)
			}
		})
	}
}

// lyingZip returns a zip whose one entry holds data but declares size
// bytes.
func lyingZip(t testing.TB, data []byte, size uint64) []byte {
	t.Helper()
	var comp bytes.Buffer
	fw, _ := zipCompressor(&comp)
	fw.Write(data)
	fw.Close()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "lie.dcm", Method: zip.Deflate,
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: size, CRC32: 0})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	zw.Close()
	return b.Bytes()
}

func TestRunCancelled(t *testing.T) {
	files := map[string][]byte{}
	for i := range 8 {
		files["IM"+itoa(i)] = ct(i).bytes()
	}
	files["MR1"] = mr(1).bytes()
	in := tree(t, files)

	t.Run("before it starts", func(t *testing.T) {
		cfg := testConfig(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Run(ctx, cfg, in); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if s, _ := cfg.Archive.Studies(archive.Query{}); len(s) != 0 {
			t.Fatalf("committed %d studies", len(s))
		}
	})
	t.Run("midway", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Workers = 1
		ctx, cancel := context.WithCancel(context.Background())
		cfg.Progress = func(p Progress) {
			if p.Done == 3 {
				cancel()
			}
		}
		rep, err := Run(ctx, cfg, in)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if rep.Stored == 0 || len(rep.Studies) != 0 {
			t.Errorf("stored %d, committed %v; want some stored, none committed", rep.Stored, rep.Studies)
		}
		if s, _ := cfg.Archive.Studies(archive.Query{}); len(s) != 0 {
			t.Fatalf("committed %d studies", len(s))
		}
		// The study can be written again: nothing was left open.
		tx, err := cfg.Archive.Begin(ct(1).study)
		if err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
	})
}

func TestRunStudyBusy(t *testing.T) {
	in := tree(t, map[string][]byte{"ct1": ct(1).bytes(), "mr1": mr(1).bytes()})
	cfg := testConfig(t)
	tx, err := cfg.Archive.Begin(ct(1).study)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rep, err := Run(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 1 || len(rep.Rejected) != 1 || !errors.Is(rep.Rejected[0].Err, ErrBusy) || !errors.Is(rep.Rejected[0].Err, archive.ErrBusy) {
		t.Fatalf("stored %d, rejected %v", rep.Stored, rep.Rejected)
	}
}

func TestRunMissingPath(t *testing.T) {
	cfg := testConfig(t)
	if _, err := Run(context.Background(), cfg, filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	a := newArchive(t)
	tests := []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"complete", func(*Config) {}, true},
		{"no archive", func(c *Config) { c.Archive = nil }, false},
		{"no quarantine", func(c *Config) { c.QuarantineDir = "" }, false},
		{"no workers", func(c *Config) { c.Workers = 0 }, false},
		{"tiny files", func(c *Config) { c.MaxFileBytes = 100 }, false},
		{"no zip bytes", func(c *Config) { c.MaxZipBytes = 0 }, false},
		{"no zip ratio", func(c *Config) { c.MaxZipRatio = 0 }, false},
		{"no zip entries", func(c *Config) { c.MaxZipEntries = 0 }, false},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.Archive, c.QuarantineDir = a, "q"
		tt.edit(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestMemoryBudget: a worker does not read a file until the run's memory
// budget has room for it, and a file larger than the whole budget is read
// once the budget is entirely free.
func TestMemoryBudget(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxMemoryBytes = 1 << 20
	r := &run{cfg: cfg, txs: map[string]*archive.Tx{}, kept: map[string]bool{}, mem: semaphore.NewWeighted(cfg.MaxMemoryBytes)}
	var released atomic.Bool
	for _, size := range []int64{600 << 10, 4 << 20} {
		if !r.mem.TryAcquire(500 << 10) {
			t.Fatal("budget not free at the start")
		}
		released.Store(false)
		opened := make(chan bool, 1)
		src := source{path: "x", size: size, open: func() ([]byte, error) {
			opened <- released.Load()
			return []byte("not dicom"), nil
		}}
		done := make(chan struct{})
		go func() { r.one(context.Background(), src); close(done) }()
		select {
		case <-opened:
			t.Fatalf("a %d-byte file was read while half the budget was held", size)
		case <-time.After(50 * time.Millisecond):
		}
		released.Store(true)
		r.mem.Release(500 << 10)
		if after := <-opened; !after {
			t.Fatal("read before the budget was released")
		}
		<-done
	}
	if !r.mem.TryAcquire(cfg.MaxMemoryBytes) {
		t.Fatal("the budget was not given back")
	}
}
