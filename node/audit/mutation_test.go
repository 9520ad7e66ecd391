package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// mutationFixture is a closed log of 1,000 records with checkpoints every
// 100, its files' contents, a verifier over them and the scan state before
// every frame, so that a mutation in frame k is verified from the state
// before it: the bytes before are unchanged, so that work is the same.
type mutationFixture struct {
	cfg    Config
	data   Data
	v      *verifier
	states []scanState // states[k]: before frame k; states[n]: at the end
	n      int
}

func newMutationFixture(t *testing.T) *mutationFixture {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.CheckpointEvery = 100
	l := openLog(t, cfg)
	fill(t, l, 1000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f := &mutationFixture{cfg: cfg, n: 1000}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.data = Data{Log: read(LogFile), Checkpoints: read(CheckpointFile), Leaves: read(LeavesFile)}
	v, rep, _, err := newVerifier(context.Background(), f.data, verifyOpts(cfg))
	if err != nil || !rep.OK() || rep.Checkpoints != 10 {
		t.Fatalf("fixture verifier: %v %+v", err, rep)
	}
	f.v = v
	res := v.scan(f.data.Log, scanState{off: -1}, func(s scanState) { f.states = append(f.states, s) })
	if res.problem != nil || res.records != 1000 || res.verified != 1000 || len(res.warnings) != 0 {
		t.Fatalf("fixture does not verify: %+v", res)
	}
	if len(f.states) != f.n+1 {
		t.Fatalf("%d states, want %d", len(f.states), f.n+1)
	}
	return f
}

// frameAt returns the index of the frame holding byte p (n for the end).
func (f *mutationFixture) frameAt(p int64) int {
	lo, hi := 0, f.n // states[lo].off <= p
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if f.states[mid].off <= p {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// check verifies log, which equals the fixture's log before byte from, and
// returns the problem found.
func (f *mutationFixture) check(log []byte, from int64) *Problem {
	if from < int64(len(logMagic)) {
		return f.v.scan(log, scanState{off: -1}, nil).problem
	}
	return f.v.scan(log, f.states[f.frameAt(from)], nil).problem
}

func TestMutationEveryByte(t *testing.T) {
	f := newMutationFixture(t)
	log := bytes.Clone(f.data.Log)
	for p := range log {
		for _, x := range []byte{1 << (p % 8), 0xff} {
			log[p] ^= x
			prob := f.check(log, int64(p))
			log[p] ^= x
			if prob == nil {
				t.Fatalf("byte %d ^ %#x: not detected", p, x)
			}
			want := int64(-1) // the header
			if p >= len(logMagic) {
				want = int64(f.frameAt(int64(p)))
			}
			if prob.Index != want {
				t.Fatalf("byte %d ^ %#x: reported at record %d (%s: %s), want %d", p, x, prob.Index, prob.Kind, prob.Reason, want)
			}
		}
	}
}

// TestMutationForged changes a byte of every record's payload and fixes the
// frame checksum, as a forger would: the Merkle tree must catch it, at the
// exact record (the leaves cache agrees with the signed roots).
func TestMutationForged(t *testing.T) {
	f := newMutationFixture(t)
	log := bytes.Clone(f.data.Log)
	step := 1
	if testing.Short() {
		step = 7
	}
	for k := 0; k < f.n; k += step {
		off := f.states[k].off
		size := int(binary.BigEndian.Uint32(log[off:]))
		for i := range size {
			q := int(off) + 4 + i
			orig := log[q : q+4+size-i+4]
			saved := bytes.Clone(log[off : int(off)+size+8])
			log[q] ^= 1
			binary.BigEndian.PutUint32(log[int(off)+4+size:], crc32.Checksum(log[off:int(off)+4+size], castagnoli))
			prob := f.check(log, off)
			copy(log[off:], saved)
			_ = orig
			if prob == nil {
				t.Fatalf("record %d byte %d: forged change not detected", k, i)
			}
			if prob.Index != int64(k) || (prob.Kind != ProblemRoot && prob.Kind != ProblemRecord) {
				t.Fatalf("record %d byte %d: reported %+v", k, i, prob)
			}
		}
	}
}

func TestMutationEveryTruncation(t *testing.T) {
	f := newMutationFixture(t)
	for p := 0; p < len(f.data.Log); p++ {
		prob := f.check(f.data.Log[:p], int64(p))
		if prob == nil {
			t.Fatalf("truncation at %d: not detected", p)
		}
		want := int64(0)
		if p >= len(logMagic) {
			want = int64(f.frameAt(int64(p)))
		}
		if prob.Index != want || prob.Kind != ProblemTruncated {
			t.Fatalf("truncation at %d: %+v, want truncated at record %d", p, prob, want)
		}
	}
}

func TestMutationSwapsAndDeletions(t *testing.T) {
	f := newMutationFixture(t)
	log := bytes.Clone(f.data.Log)
	frame := func(k int) []byte { return f.data.Log[f.states[k].off:f.states[k+1].off] }
	for k := 0; k+1 < f.n; k++ {
		a, b := frame(k), frame(k+1)
		off := f.states[k].off
		copy(log[off:], b)
		copy(log[off+int64(len(b)):], a)
		prob := f.check(log, off)
		copy(log[off:], a)
		copy(log[off+int64(len(a)):], b)
		if prob == nil || prob.Index != int64(k) {
			t.Fatalf("swap of %d and %d: %+v, want a problem at record %d", k, k+1, prob, k)
		}
	}
	buf := make([]byte, 0, len(log))
	for k := range f.n {
		buf = append(append(buf[:0], f.data.Log[:f.states[k].off]...), f.data.Log[f.states[k+1].off:]...)
		prob := f.check(buf, f.states[k].off)
		if prob == nil || prob.Index != int64(k) {
			t.Fatalf("deletion of %d: %+v, want a problem at record %d", k, prob, k)
		}
	}
}

// TestMutationFastPathAgrees cross-checks the resumed scans above against
// the exported VerifyData on random mutations.
func TestMutationFastPathAgrees(t *testing.T) {
	f := newMutationFixture(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		log := bytes.Clone(f.data.Log)
		p := rng.IntN(len(log))
		log[p] ^= byte(1 + rng.IntN(255))
		fast := f.check(log, int64(p))
		rep, err := VerifyData(context.Background(), Data{Log: log, Checkpoints: f.data.Checkpoints, Leaves: f.data.Leaves}, verifyOpts(f.cfg))
		if err == nil || fast == nil || len(rep.Problems) == 0 {
			t.Fatalf("byte %d: VerifyData %v, fast path %+v", p, err, fast)
		}
		if rep.Problems[0] != *fast {
			t.Fatalf("byte %d: VerifyData %+v, fast path %+v", p, rep.Problems[0], *fast)
		}
	}
}

// TestMutationCheckpointFile: every byte change of the checkpoint file is a
// problem, except a change that makes the last note look torn, which is a
// warning that leaves the records it covered unsigned (anchoring is what
// protects the latest checkpoint).
func TestMutationCheckpointFile(t *testing.T) {
	f := newMutationFixture(t)
	cp := bytes.Clone(f.data.Checkpoints)
	step := 1
	if testing.Short() {
		step = 5
	}
	for p := 0; p < len(cp); p += step {
		cp[p] ^= 0x20
		d := f.data
		d.Checkpoints = cp
		rep, err := VerifyData(context.Background(), d, verifyOpts(f.cfg))
		cp[p] ^= 0x20
		if err != nil {
			continue
		}
		if !hasWarning(rep, ProblemTornTail) || !hasWarning(rep, ProblemUnsigned) {
			t.Fatalf("checkpoint byte %d: not detected: %+v", p, rep)
		}
	}
}

func TestForkAndShrink(t *testing.T) {
	f := newMutationFixture(t)
	nv, _ := NewVerifier(f.cfg.origin(), f.cfg.Key.Public().(ed25519.PublicKey))
	var cps []Checkpoint
	scanBytes(f.data.Checkpoints[len(checkpointMagic):], 0, func(_ int64, p []byte) error {
		c, err := OpenCheckpoint(p, nv)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, c)
		return nil
	})
	signer, _ := newSigner(f.cfg.origin(), f.cfg.Key)
	forged, _ := signCheckpoint(signer, 500, bytes.Repeat([]byte{7}, 32))
	file := func(cs ...Checkpoint) []byte {
		b := []byte(checkpointMagic)
		for _, c := range cs {
			b = appendFrame(b, c.Note)
		}
		return b
	}
	tests := []struct {
		name string
		cps  []byte
		want ProblemKind
	}{
		{"fork", file(cps[3], cps[4], forged, cps[5]), ProblemFork},
		{"shrink", file(cps[3], cps[5], cps[4]), ProblemShrink},
		{"fork only", file(forged), ProblemRoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := f.data
			d.Checkpoints = tt.cps
			rep, err := VerifyData(context.Background(), d, verifyOpts(f.cfg))
			if err == nil || !hasProblem(rep, tt.want) {
				t.Fatalf("err %v, report %+v; want %s", err, rep, tt.want)
			}
		})
	}
}

func hasProblem(r *Report, k ProblemKind) bool {
	for _, p := range r.Problems {
		if p.Kind == k {
			return true
		}
	}
	return false
}
