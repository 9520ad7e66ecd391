package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/transparency-dev/merkle/compact"
)

// Anchor is where a facility's checkpoints are kept outside its own log:
// the federation registry (AnchorAuditCheckpoint). Verify checks the log
// against them too, so a facility cannot rewrite its history and its
// checkpoint file together.
type Anchor interface {
	// Anchored returns the checkpoints anchored for facility's audit log,
	// in any order. Verify re-verifies each one's signed note; it trusts
	// none of the parsed fields.
	Anchored(ctx context.Context, facility string) ([]Checkpoint, error)
}

// VerifyOptions say whose log is verified.
type VerifyOptions struct {
	Origin string            // checkpoint origin (key name)
	Key    ed25519.PublicKey // the facility's public key
	// Anchor, if set, supplies anchored checkpoints for Facility.
	Anchor   Anchor
	Facility string
}

// ProblemKind classifies what Verify found.
type ProblemKind string

// Problems. The last two are warnings: they do not mean tampering.
const (
	ProblemHeader    ProblemKind = "bad-header"    // a file does not start with its magic line
	ProblemFrame     ProblemKind = "bad-frame"     // a complete frame with a wrong checksum or impossible length
	ProblemRecord    ProblemKind = "bad-record"    // a frame whose record does not decode
	ProblemRoot      ProblemKind = "root-mismatch" // the records differ from what a checkpoint signs
	ProblemTruncated ProblemKind = "truncated"     // fewer records than a checkpoint signs
	ProblemSignature ProblemKind = "bad-signature" // a checkpoint whose signature or form is wrong
	ProblemFork      ProblemKind = "fork"          // two checkpoints of one size with different roots
	ProblemShrink    ProblemKind = "shrink"        // a checkpoint smaller than the one before it
	ProblemTornTail  ProblemKind = "torn-tail"     // warning: an incomplete last frame, never acknowledged
	ProblemUnsigned  ProblemKind = "unsigned-tail" // warning: records after the latest checkpoint
)

// Problem is one finding of Verify.
type Problem struct {
	Kind ProblemKind `json:"kind"`
	// Index is the first record concerned (-1 if none). When the exact
	// record cannot be told, End is set and the record is in [Index, End).
	Index  int64  `json:"index"`
	End    int64  `json:"end,omitempty"`
	Offset int64  `json:"offset"` // byte offset in the log file, or -1
	Reason string `json:"reason"`
}

// Report is the result of Verify.
type Report struct {
	Records     uint64    `json:"records"`     // complete records in the log
	Verified    uint64    `json:"verified"`    // records covered by a checkpoint that matched
	Checkpoints int       `json:"checkpoints"` // valid local checkpoints
	Anchored    int       `json:"anchored"`    // valid anchored checkpoints
	Problems    []Problem `json:"problems,omitempty"`
	Warnings    []Problem `json:"warnings,omitempty"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// err returns the TamperError for the report: the first problem with a
// record index, else the first problem.
func (r *Report) err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	p := r.Problems[0]
	for _, q := range r.Problems {
		if q.Index >= 0 {
			p = q
			break
		}
	}
	reason := fmt.Sprintf("%s: %s", p.Kind, p.Reason)
	if len(r.Problems) > 1 {
		reason += fmt.Sprintf(" (and %d more problems)", len(r.Problems)-1)
	}
	return &TamperError{Index: p.Index, Offset: p.Offset, Reason: reason}
}

// Data is the contents of a log's files, for VerifyData.
type Data struct {
	Log         []byte
	Checkpoints []byte
	Leaves      []byte // optional; lets Verify name the exact record that changed
}

// Verify checks the log in dir offline: it reads every record, recomputes
// the leaf hashes and the Merkle roots, verifies every checkpoint's
// signature, checks that checkpoints never shrink or fork, and compares
// each checkpoint, local or anchored, with the root of the records it
// signs. A log that fails returns the report and a *TamperError (wrapping
// ErrTampered) naming the first bad record and why; other errors are I/O
// or anchor failures.
//
// What Verify proves: every record covered by a valid checkpoint is exactly
// what was signed, in order, with nothing inserted or removed. Records
// after the latest checkpoint are protected only by frame checksums until
// the next one (a warning says how many there are).
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*Report, error) {
	var d Data
	var err error
	// Checkpoints first: the log only grows, so every record they sign is
	// in the log read afterwards.
	if d.Checkpoints, err = os.ReadFile(filepath.Join(dir, CheckpointFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	if d.Log, err = os.ReadFile(filepath.Join(dir, LogFile)); err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	if d.Leaves, err = os.ReadFile(filepath.Join(dir, LeavesFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	return VerifyData(ctx, d, opts)
}

// VerifyData is Verify over the files' contents.
func VerifyData(ctx context.Context, d Data, opts VerifyOptions) (*Report, error) {
	v, rep, anchorErr, err := newVerifier(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	res := v.scan(d.Log, scanState{off: -1}, nil)
	rep.Records, rep.Verified = res.records, res.verified
	if res.problem != nil {
		rep.Problems = append([]Problem{*res.problem}, rep.Problems...)
	}
	rep.Warnings = append(rep.Warnings, res.warnings...)
	return rep, errors.Join(rep.err(), anchorErr)
}

// target is a root the log must have at a size.
type target struct {
	size uint64
	root []byte
	from string
}

type verifier struct {
	targets   []target // by size
	side      []byte   // leaf hashes from the leaves cache, flat
	sideRoots map[uint64]bool
}

// newVerifier checks the checkpoints (signatures, order, forks), local and
// anchored, and prepares the targets the log scan compares roots with.
func newVerifier(ctx context.Context, d Data, opts VerifyOptions) (*verifier, *Report, error, error) {
	nv, err := NewVerifier(opts.Origin, opts.Key)
	if err != nil {
		return nil, nil, nil, err
	}
	rep := &Report{}
	v := &verifier{sideRoots: map[uint64]bool{}}
	problem := func(k ProblemKind, index int64, reason string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: k, Index: index, Offset: -1, Reason: fmt.Sprintf(reason, args...)})
	}
	var all []target
	if len(d.Checkpoints) > 0 {
		if !checkMagic(d.Checkpoints, checkpointMagic) {
			if !bytes.HasPrefix([]byte(checkpointMagic), d.Checkpoints) {
				problem(ProblemHeader, -1, "checkpoint file has no valid header")
			}
		} else {
			var prev *Checkpoint
			k := 0
			t, _ := scanBytes(d.Checkpoints[len(checkpointMagic):], int64(len(checkpointMagic)), func(off int64, p []byte) error {
				k++
				c, err := OpenCheckpoint(p, nv)
				if err != nil {
					problem(ProblemSignature, -1, "checkpoint %d (byte %d of the checkpoint file): %v", k, off, err)
					return nil
				}
				if prev != nil && c.Size < prev.Size {
					problem(ProblemShrink, int64(c.Size), "checkpoint %d has size %d, smaller than the %d before it", k, c.Size, prev.Size)
				}
				rep.Checkpoints++
				all = append(all, target{c.Size, c.Root, fmt.Sprintf("checkpoint %d", k)})
				prev = &c
				return nil
			})
			if t.Bytes > 0 {
				if t.Torn {
					rep.Warnings = append(rep.Warnings, Problem{Kind: ProblemTornTail, Index: -1, Offset: -1, Reason: "checkpoint file ends in an incomplete frame: " + t.Why})
				} else {
					problem(ProblemFrame, -1, "checkpoint file damaged at byte %d: %s", t.Offset, t.Why)
				}
			}
		}
	}
	var anchorErr error
	if opts.Anchor != nil {
		cs, err := opts.Anchor.Anchored(ctx, opts.Facility)
		if err != nil {
			anchorErr = fmt.Errorf("audit: verify: anchored checkpoints of %s: %w", opts.Facility, err)
		}
		for _, a := range cs {
			c, err := OpenCheckpoint(a.Note, nv)
			if err != nil {
				problem(ProblemSignature, -1, "anchored checkpoint (size %d claimed): %v", a.Size, err)
				continue
			}
			rep.Anchored++
			all = append(all, target{c.Size, c.Root, "anchored checkpoint"})
		}
	}
	// Forks: one size, two roots, anywhere among them.
	slices.SortStableFunc(all, func(a, b target) int { return cmpUint(a.size, b.size) })
	for i := 0; i < len(all); i++ {
		if i > 0 && all[i].size == all[i-1].size {
			if bytes.Equal(all[i].root, all[i-1].root) {
				continue
			}
			problem(ProblemFork, int64(all[i].size), "fork: %s and %s both have size %d but different roots", all[i-1].from, all[i].from, all[i].size)
		}
		v.targets = append(v.targets, all[i])
	}
	if len(d.Leaves) > len(leavesMagic) && checkMagic(d.Leaves, leavesMagic) {
		e := d.Leaves[len(leavesMagic):]
		for i := 0; i+leafEntrySize <= len(e); i += leafEntrySize {
			v.side = append(v.side, e[i+8:i+leafEntrySize]...)
		}
	}
	return v, rep, anchorErr, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scanState is the scan's progress at a frame boundary.
type scanState struct {
	off   int64    // offset of the next frame; -1 before the header is checked
	n     uint64   // records so far
	rng   [][]byte // compact range hashes of [0, n)
	next  int      // next target
	good  uint64   // size of the last target matched
	since []byte   // leaf hashes of [good, n), flat
}

func (s scanState) clone() scanState {
	s.rng = slices.Clone(s.rng)
	s.since = slices.Clone(s.since)
	return s
}

type scanResult struct {
	records, verified uint64
	problem           *Problem
	warnings          []Problem
}

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// scan checks log from state st to the end or the first problem. If snap is
// set, it is called with the state before each frame.
func (v *verifier) scan(log []byte, st scanState, snap func(scanState)) scanResult {
	var res scanResult
	fail := func(k ProblemKind, index, end, off int64, reason string) scanResult {
		res.records = st.n
		res.verified = st.good
		res.problem = &Problem{Kind: k, Index: index, End: end, Offset: off, Reason: reason}
		return res
	}
	if st.off < 0 {
		if !checkMagic(log, logMagic) {
			if !bytes.HasPrefix([]byte(logMagic), log) {
				return fail(ProblemHeader, -1, 0, 0, "log file has no valid header")
			}
			log = []byte(logMagic) // a header cut short: an empty log
		}
		st.off = int64(len(logMagic))
	}
	rng, err := rangeFactory.NewRange(0, st.n, slices.Clone(st.rng))
	if err != nil {
		panic(err) // snapshots come from this function
	}
	// check compares every target of size st.n with the current root.
	check := func() *scanResult {
		for st.next < len(v.targets) && v.targets[st.next].size == st.n {
			t := v.targets[st.next]
			root := hasher.EmptyRoot()
			if st.n > 0 {
				root, _ = rng.GetRootHash(nil)
			}
			if !bytes.Equal(root, t.root) {
				i, end, why := v.pinpoint(st.good, t, st.since)
				r := fail(ProblemRoot, i, end, -1, why)
				return &r
			}
			st.good = st.n
			st.since = st.since[:0]
			st.next++
		}
		return nil
	}
	if r := check(); r != nil {
		return *r
	}
	var stop *scanResult
	t, _ := scanBytes(log[st.off:], st.off, func(off int64, p []byte) error {
		st.off = off
		if snap != nil {
			st.rng = rng.Hashes()
			snap(st.clone())
		}
		if _, err := decodeRecord(p, st.n); err != nil {
			r := fail(ProblemRecord, int64(st.n), 0, off, fmt.Sprintf("complete frame with a valid checksum holds no valid record: %v", err))
			stop = &r
			return errStop
		}
		h := leafHash(p)
		rng.Append(h[:], nil)
		st.since = append(st.since, h[:]...)
		st.n++
		if r := check(); r != nil {
			stop = r
			return errStop
		}
		return nil
	})
	if stop != nil {
		return *stop
	}
	st.off = t.Offset
	if snap != nil {
		st.rng = rng.Hashes()
		snap(st.clone())
	}
	if t.Bytes > 0 && !t.Torn {
		return fail(ProblemFrame, int64(st.n), 0, t.Offset, t.Why+" in a complete frame: damage or tampering, not a crash")
	}
	if st.next < len(v.targets) {
		t2 := v.targets[st.next]
		// A record removed from the middle leaves the log short too; the
		// leaves cache, when it matches t2, tells which record went.
		if uint64(len(v.side)/hashSize) >= t2.size && v.sideRootMatches(t2) {
			for i := st.good; i < st.n; i++ {
				k := (i - st.good) * hashSize
				if !bytes.Equal(st.since[k:k+hashSize], v.side[i*hashSize:(i+1)*hashSize]) {
					return fail(ProblemRoot, int64(i), 0, -1, fmt.Sprintf("record %d is not the record %s signs (changed, removed, inserted or moved)", i, t2.from))
				}
			}
		}
		return fail(ProblemTruncated, int64(st.n), 0, t.Offset, fmt.Sprintf("the log has %d complete records but %s signs %d: records were removed", st.n, t2.from, t2.size))
	}
	res.records, res.verified = st.n, st.good
	if t.Bytes > 0 {
		res.warnings = append(res.warnings, Problem{Kind: ProblemTornTail, Index: int64(st.n), Offset: t.Offset, Reason: fmt.Sprintf("%d bytes of an unacknowledged write after the last record (%s); Open cuts them off", t.Bytes, t.Why)})
	}
	if st.n > st.good {
		res.warnings = append(res.warnings, Problem{Kind: ProblemUnsigned, Index: int64(st.good), End: int64(st.n), Offset: -1, Reason: fmt.Sprintf("%d records after the latest checkpoint are not signed yet", st.n-st.good)})
	}
	return res
}

// pinpoint finds which record in [good, t.size) differs from what t signs.
// The leaves cache is not trusted by itself, but if its first t.size leaf
// hashes hash to t's signed root then they are the signed leaves, and the
// first record whose leaf differs from them is the culprit. Otherwise only
// the range is known.
func (v *verifier) pinpoint(good uint64, t target, since []byte) (index, end int64, why string) {
	if uint64(len(v.side)/hashSize) >= t.size && v.sideRootMatches(t) {
		for i := good; i < t.size; i++ {
			k := (i - good) * hashSize
			if !bytes.Equal(since[k:k+hashSize], v.side[i*hashSize:(i+1)*hashSize]) {
				return int64(i), 0, fmt.Sprintf("record %d is not the record %s signs (changed, removed, inserted or moved)", i, t.from)
			}
		}
	}
	return int64(good), int64(t.size), fmt.Sprintf("the records in [%d, %d) do not hash to the root %s signs: one was changed, removed, inserted or moved", good, t.size, t.from)
}

func (v *verifier) sideRootMatches(t target) bool {
	if ok, done := v.sideRoots[t.size]; done {
		return ok
	}
	r := rangeFactory.NewEmptyRange(0)
	for i := uint64(0); i < t.size; i++ {
		r.Append(v.side[i*hashSize:(i+1)*hashSize], nil)
	}
	root := hasher.EmptyRoot()
	if t.size > 0 {
		root, _ = r.GetRootHash(nil)
	}
	ok := bytes.Equal(root, t.root)
	v.sideRoots[t.size] = ok
	return ok
}

// Verify verifies the open log's files like the package function, as the
// facility's own key sees them, against the anchor if one is given; the
// reading is recorded first.
func (l *Log) Verify(ctx context.Context, a Actor, anchor Anchor) (*Report, error) {
	if _, err := l.recordRead(ctx, a, "verify", nil); err != nil {
		return nil, err
	}
	return Verify(ctx, l.cfg.Dir, VerifyOptions{
		Origin:   l.Origin(),
		Key:      l.cfg.Key.Public().(ed25519.PublicKey),
		Anchor:   anchor,
		Facility: l.cfg.Facility,
	})
}
