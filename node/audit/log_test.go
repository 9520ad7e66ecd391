package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAppendReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.CheckpointEvery = 16
	var anchored []Checkpoint
	cfg.OnCheckpoint = func(c Checkpoint) { anchored = append(anchored, c) }
	l := openLog(t, cfg)
	for i := range 40 {
		idx, err := l.Append(context.Background(), sample(i))
		if err != nil || idx != uint64(i) {
			t.Fatalf("Append %d = %d, %v", i, idx, err)
		}
	}
	if got := sizes(l.Checkpoints()); !cmp.Equal(got, []uint64{16, 32}) {
		t.Fatalf("checkpoints at %v, want [16 32]", got)
	}
	root40, _ := l.Root(40)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), sample(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if got := sizes(anchored); !cmp.Equal(got, []uint64{16, 32, 40}) {
		t.Fatalf("OnCheckpoint saw %v, want [16 32 40] (Close signs the tail)", got)
	}
	l = openLog(t, cfg)
	defer l.Close()
	if l.Size() != 40 {
		t.Fatalf("reopened size %d", l.Size())
	}
	if r, _ := l.Root(40); !bytes.Equal(r, root40) {
		t.Fatal("root changed across reopen")
	}
	recs, err := l.Search(context.Background(), reader, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 40 {
		t.Fatalf("search returned %d records", len(recs))
	}
	for i, r := range recs {
		want := sample(i)
		want.Index, want.Time = uint64(i), epoch.Add(time.Duration(i)*time.Second)
		if diff := cmp.Diff(want, r); diff != "" {
			t.Fatalf("record %d (-want +got):\n%s", i, diff)
		}
	}
	rep, err := Verify(context.Background(), dir, verifyOpts(cfg))
	if err != nil {
		t.Fatalf("Verify: %v (%+v)", err, rep)
	}
}

func sizes(cs []Checkpoint) []uint64 {
	var s []uint64
	for _, c := range cs {
		s = append(s, c.Size)
	}
	return s
}

func TestOpenSignsUnsignedTail(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	l := openLog(t, cfg)
	fill(t, l, 5)
	// Simulate a crash: no Close, so nothing is signed yet.
	l.closeFiles()
	l2 := openLog(t, cfg)
	defer l2.Close()
	if got := sizes(l2.Checkpoints()); !cmp.Equal(got, []uint64{5}) {
		t.Fatalf("checkpoints after reopen %v, want [5]", got)
	}
}

func TestOpenLocked(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	l := openLog(t, cfg)
	defer l.Close()
	if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig(t, "x")
	tests := map[string]func(*Config){
		"no dir":      func(c *Config) { c.Dir = "" },
		"no facility": func(c *Config) { c.Facility = "" },
		"no key":      func(c *Config) { c.Key = nil },
		"no clock":    func(c *Config) { c.Now = nil },
		"zero every":  func(c *Config) { c.CheckpointEvery = 0 },
		"bad origin":  func(c *Config) { c.Origin = "a b" },
		"plus origin": func(c *Config) { c.Origin = "a+b" },
		"bad hours":   func(c *Config) { c.Flags.WorkStart = 20 * time.Hour },
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range tests {
		c := good
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: Validate accepted", name)
		}
	}
}

// TestFailClosed: after a failed write the log refuses every record.
func TestFailClosed(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	l := openLog(t, cfg)
	fill(t, l, 3)
	l.logf.Close() // the next write fails
	if _, err := l.Append(context.Background(), sample(3)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on a broken file: %v, want ErrFailed", err)
	}
	if _, err := l.Append(context.Background(), sample(4)); !errors.Is(err, ErrFailed) {
		t.Fatalf("second Append: %v, want ErrFailed", err)
	}
	if _, err := l.Search(context.Background(), reader, Query{}); err == nil {
		t.Fatal("Search returned records although its own audit record could not be written")
	}
	l.Close()
	l = openLog(t, cfg)
	defer l.Close()
	if l.Size() != 3 {
		t.Fatalf("size after reopen %d, want 3", l.Size())
	}
	if _, err := l.Append(context.Background(), sample(3)); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	// A canceled context and an invalid record are refused without writing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, sample(5)); err == nil {
		t.Fatal("Append with a canceled context succeeded")
	}
	if _, err := l.Append(context.Background(), Record{Event: "1"}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("invalid record: %v", err)
	}
	if l.Size() != 4 {
		t.Fatalf("size %d, want 4", l.Size())
	}
	if _, err := l.Search(context.Background(), Actor{}, Query{}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("anonymous search: %v", err)
	}
}

// crashLog writes n records and leaves the log as a crash would (files
// synced, nothing closed, no final checkpoint).
func crashLog(t *testing.T, cfg Config, n int) {
	t.Helper()
	l := openLog(t, cfg)
	fill(t, l, n)
	l.closeFiles()
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestRecoverTornTail(t *testing.T) {
	r := sample(99)
	r.Time = epoch
	payload, _ := encodeRecord(&r)
	frame := appendFrame(nil, payload)
	tests := []struct {
		name string
		tail []byte
	}{
		{"header cut", frame[:3]},
		{"payload cut", frame[:len(frame)/2]},
		{"checksum cut", frame[:len(frame)-1]},
		{"zero filled", make([]byte, 300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			crashLog(t, cfg, 10)
			appendFile(t, filepath.Join(dir, LogFile), tt.tail)
			rep, err := Verify(context.Background(), dir, verifyOpts(cfg))
			if err != nil || !hasWarning(rep, ProblemTornTail) {
				t.Fatalf("Verify before recovery: %v, %+v; want a torn-tail warning", err, rep)
			}
			l := openLog(t, cfg)
			if l.Size() != 10 {
				t.Fatalf("size %d after recovery, want 10", l.Size())
			}
			if _, err := l.Append(context.Background(), sample(10)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			torn, err := os.ReadFile(filepath.Join(dir, TornFile))
			if err != nil || !bytes.Contains(torn, tt.tail) {
				t.Fatalf("torn tail not kept: %v", err)
			}
			if rep, err := Verify(context.Background(), dir, verifyOpts(cfg)); err != nil || len(rep.Warnings) != 0 {
				t.Fatalf("Verify after recovery: %v, %+v", err, rep)
			}
		})
	}
}

func hasWarning(r *Report, k ProblemKind) bool {
	if r == nil {
		return false
	}
	for _, w := range r.Warnings {
		if w.Kind == k {
			return true
		}
	}
	return false
}

// TestOpenRefusesTampering: damage that a crash cannot cause stops Open.
func TestOpenRefusesTampering(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string, log []byte) []byte
	}{
		{"flipped byte in a middle frame, no cache", func(t *testing.T, dir string, b []byte) []byte {
			b[len(logMagic)+40] ^= 1
			os.Remove(filepath.Join(dir, LeavesFile))
			return b
		}},
		{"re-checksummed record in a middle frame, no cache", func(t *testing.T, dir string, b []byte) []byte {
			reframe(b, len(logMagic), func(p []byte) { p[len(p)-1] ^= 1 })
			os.Remove(filepath.Join(dir, LeavesFile))
			return b
		}},
		{"flipped byte in the last frame", func(t *testing.T, dir string, b []byte) []byte {
			b[len(b)-3] ^= 1
			return b
		}},
		{"garbage after the last frame", func(t *testing.T, dir string, b []byte) []byte {
			return append(b, []byte("\x00\x00\x00\x05hello0000")...)
		}},
		{"whole records cut off", func(t *testing.T, dir string, b []byte) []byte {
			return b[:len(b)-50] // cuts into a frame: looks torn, but checkpoints sign more
		}},
		{"bad header", func(t *testing.T, dir string, b []byte) []byte {
			b[0] = 'X'
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			l := openLog(t, cfg)
			fill(t, l, 20)
			l.Close()
			path := filepath.Join(dir, LogFile)
			b, _ := os.ReadFile(path)
			b = tt.damage(t, dir, b)
			os.WriteFile(path, b, 0o600)
			_, err := Open(context.Background(), cfg)
			var te *TamperError
			if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
				t.Fatalf("Open: %v, want a *TamperError", err)
			}
		})
	}
}

// reframe changes the payload of the frame at off in place and fixes its
// checksum, as a deliberate forger would.
func reframe(b []byte, off int, change func(p []byte)) {
	n := int(binary.BigEndian.Uint32(b[off:]))
	change(b[off+4 : off+4+n])
	binary.BigEndian.PutUint32(b[off+4+n:], crc32.Checksum(b[off:off+4+n], castagnoli))
}

// TestTamperBehindCache: Open trusts the leaves cache for speed (Verify is
// the full check), but a search that reads a changed record catches it.
func TestTamperBehindCache(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	l := openLog(t, cfg)
	fill(t, l, 20)
	l.Close()
	path := filepath.Join(dir, LogFile)
	b, _ := os.ReadFile(path)
	reframe(b, len(logMagic), func(p []byte) { p[len(p)-1] ^= 1 }) // record 0
	os.WriteFile(path, b, 0o600)
	l = openLog(t, cfg)
	defer l.Close()
	_, err := l.Search(context.Background(), reader, Query{})
	var te *TamperError
	if !errors.As(err, &te) || te.Index != 0 {
		t.Fatalf("Search: %v, want a *TamperError at record 0", err)
	}
	rep, err := Verify(context.Background(), dir, verifyOpts(cfg))
	if !errors.As(err, &te) || te.Index != 0 || rep.Problems[0].Kind != ProblemRoot {
		t.Fatalf("Verify: %v %+v, want root mismatch at record 0", err, rep)
	}
}

// TestOpenRebuildsLeavesCache: a stale, damaged or missing cache is rebuilt
// from the log; a log changed behind an intact cache is still caught,
// because the roots are checked against the checkpoints.
func TestOpenRebuildsLeavesCache(t *testing.T) {
	for _, name := range []string{"missing", "damaged", "short", "garbage"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			l := openLog(t, cfg)
			fill(t, l, 30)
			root, _ := l.Root(30)
			l.Close()
			path := filepath.Join(dir, LeavesFile)
			b, _ := os.ReadFile(path)
			switch name {
			case "missing":
				os.Remove(path)
			case "damaged":
				b[len(leavesMagic)+5*leafEntrySize+20] ^= 0xff // a leaf hash in the middle
				os.WriteFile(path, b, 0o600)
			case "short":
				os.WriteFile(path, b[:len(b)-3*leafEntrySize-7], 0o600)
			case "garbage":
				os.WriteFile(path, append(b, bytes.Repeat([]byte{0x42}, 3*leafEntrySize)...), 0o600)
			}
			l = openLog(t, cfg)
			defer l.Close()
			if got, _ := l.Root(30); l.Size() != 30 || !bytes.Equal(got, root) {
				t.Fatalf("size %d root %x after reopen, want 30 %x", l.Size(), got, root)
			}
			recs, err := l.Search(context.Background(), reader, Query{User: "user3"})
			if err != nil || len(recs) == 0 {
				t.Fatalf("search after rebuild: %d records, %v", len(recs), err)
			}
		})
	}
}
