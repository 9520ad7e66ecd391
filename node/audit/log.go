package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// File names inside Config.Dir.
const (
	LogFile        = "log"         // length-prefixed canonical records
	CheckpointFile = "checkpoints" // signed checkpoint notes, framed
	LeavesFile     = "leaves"      // per record: frame offset and leaf hash (a cache)
	TornFile       = "torn"        // torn tails cut off by recovery, kept for inspection
)

// Errors callers branch on.
var (
	// ErrClosed is returned by every method of a closed Log.
	ErrClosed = errors.New("audit: log closed")
	// ErrFailed is returned by Append after a write or sync of the log
	// failed: what reached the disk is unknown, so the Log refuses further
	// records until it is reopened (and its tail recovered).
	ErrFailed = errors.New("audit: log failed")
	// ErrTampered reports a log that is not what its signed checkpoints
	// say: a record changed, removed, inserted or reordered, a damaged
	// frame, a fork or a shrinking checkpoint. It is wrapped by
	// *TamperError.
	ErrTampered = errors.New("audit: log tampered")
	// ErrLocked reports that another process has the log open.
	ErrLocked = errors.New("audit: log in use by another process")
)

// TamperError says where a log's integrity fails. It wraps ErrTampered.
type TamperError struct {
	Index  int64  // first record concerned, or -1 when no record is (a checkpoint problem)
	Offset int64  // byte offset in the log file, or -1
	Reason string // never the record's contents
}

func (e *TamperError) Error() string {
	var where string
	switch {
	case e.Index >= 0 && e.Offset >= 0:
		where = fmt.Sprintf(" at record %d (byte %d)", e.Index, e.Offset)
	case e.Index >= 0:
		where = fmt.Sprintf(" at record %d", e.Index)
	case e.Offset >= 0:
		where = fmt.Sprintf(" at byte %d", e.Offset)
	}
	return fmt.Sprintf("audit: log tampered%s: %s", where, e.Reason)
}

// Unwrap returns ErrTampered.
func (e *TamperError) Unwrap() error { return ErrTampered }

// Config configures a Log.
type Config struct {
	// Dir holds the log's files; it is created 0700 if missing.
	Dir string
	// Facility is this node's facility ID: the audit source of every record.
	Facility string
	// Origin is the checkpoint origin and signing key name; by default
	// "dicomesh/audit/" + Facility. It may not contain spaces or '+'.
	Origin string
	// Key is the facility's Ed25519 key; it signs checkpoints.
	Key ed25519.PrivateKey
	// CheckpointEvery is how many records at most go unsigned: a checkpoint
	// is signed once that many have been appended since the last one, on
	// Open when records follow the last checkpoint, and on Close.
	CheckpointEvery uint64
	// Now is the clock that stamps records. Default time.Now.
	Now func() time.Time
	// Logger receives operational messages (never record contents).
	Logger *slog.Logger
	// OnCheckpoint, if set, is called with each new durable checkpoint, in
	// order, from the goroutine that wrote it, while the Log holds its sync
	// lock: it must not block or call the Log. The node queues the
	// checkpoint for anchoring in the registry.
	OnCheckpoint func(Checkpoint)
	// Flags are the rules Log.Flags applies.
	Flags FlagRules
}

// DefaultConfig returns a Config with the defaults; Dir, Facility and Key
// must still be set.
func DefaultConfig() Config {
	return Config{
		CheckpointEvery: 1000,
		Now:             time.Now,
		Logger:          slog.New(slog.DiscardHandler),
		Flags:           DefaultFlagRules(),
	}
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("audit: config: no directory")
	case c.Facility == "":
		return errors.New("audit: config: no facility")
	case len(c.Key) != ed25519.PrivateKeySize:
		return errors.New("audit: config: no Ed25519 signing key")
	case c.CheckpointEvery == 0:
		return errors.New("audit: config: CheckpointEvery is 0")
	case c.Now == nil:
		return errors.New("audit: config: no clock")
	case c.Logger == nil:
		return errors.New("audit: config: no logger")
	}
	if o := c.origin(); o == "" || strings.ContainsAny(o, "+\n") || strings.IndexFunc(o, isSpace) >= 0 {
		return fmt.Errorf("audit: config: origin %q is not a valid key name", o)
	}
	return c.Flags.Validate()
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

func (c Config) origin() string {
	if c.Origin != "" {
		return c.Origin
	}
	return "dicomesh/audit/" + c.Facility
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	cfg      Config
	signer   note.Signer
	verifier note.Verifier

	logf, cpf, leavesf *os.File

	// syncMu serializes fsyncs and checkpoints; it is taken before mu.
	syncMu sync.Mutex

	mu          sync.Mutex
	closed      bool
	err         error // sticky write failure
	end         int64 // end of the last frame written
	offsets     []int64
	tree        tree
	synced      uint64 // records known durable
	syncedEnd   int64  // log offset up to which the file is durable
	cps         []Checkpoint
	cpEnd       int64
	leavesEnd   int64
	leavesStale bool // the leaves cache could not be written; rebuilt on open

	idx index // search index, built on first use
}

// Open opens (creating if needed) the log in cfg.Dir, recovers a torn tail
// left by a crash, checks the log against its latest signed checkpoints and
// signs a checkpoint over any records that follow them.
//
// Recovery cuts off only an incomplete last frame (or a zero-filled tail):
// a write that was never acknowledged. The bytes cut off are appended to
// the file "torn". A complete frame that fails its checksum, a record that
// does not decode, fewer records than a checkpoint signs or a root that
// differs from a signed one are tampering (or media damage): Open then
// fails with a *TamperError and changes nothing, and the log must be
// examined with Verify.
//
// Open reads the leaf hashes from the leaves cache and scans only the
// frames after it, so it does not read the whole log; Verify does.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	origin := cfg.origin()
	signer, err := newSigner(origin, cfg.Key)
	if err != nil {
		return nil, err
	}
	verifier, err := NewVerifier(origin, cfg.Key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create %s: %w", cfg.Dir, err)
	}
	l := &Log{cfg: cfg, signer: signer, verifier: verifier}
	ok := false
	defer func() {
		if !ok {
			l.closeFiles()
		}
	}()
	if l.logf, err = openMagic(cfg.Dir, LogFile, logMagic); err != nil {
		return nil, err
	}
	if err := lockFile(l.logf); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, cfg.Dir, err)
	}
	if l.cpf, err = openMagic(cfg.Dir, CheckpointFile, checkpointMagic); err != nil {
		return nil, err
	}
	if l.leavesf, err = openMagic(cfg.Dir, LeavesFile, leavesMagic); err != nil {
		return nil, err
	}
	if err := l.loadCheckpoints(); err != nil {
		return nil, err
	}
	if err := l.loadLeaves(ctx, true); err != nil {
		if !errors.Is(err, errStaleLeaves) {
			return nil, err
		}
		cfg.Logger.Warn("audit: leaves cache does not match the log; rebuilding it from the log", "dir", cfg.Dir)
		if err := l.loadLeaves(ctx, false); err != nil {
			return nil, err
		}
	}
	if n := l.tree.size(); n > l.lastSizeLocked() {
		if _, err := l.checkpoint(n); err != nil {
			return nil, err
		}
	}
	ok = true
	return l, nil
}

// openMagic opens dir/name read-write, creating it with its magic line.
func openMagic(dir, name, magic string) (*os.File, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	head := make([]byte, len(magic))
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		f.Close()
		return nil, fmt.Errorf("audit: read %s: %w", path, err)
	}
	switch {
	case n == len(magic) && string(head) == magic:
		return f, nil
	case strings.HasPrefix(magic, string(head[:n])):
		// New, or its creation was cut short: nothing was ever acknowledged.
		err := f.Truncate(0)
		if err == nil {
			_, err = f.WriteAt([]byte(magic), 0)
		}
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = syncDir(dir)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: create %s: %w", path, err)
		}
		return f, nil
	}
	f.Close()
	return nil, &TamperError{Index: -1, Offset: 0, Reason: fmt.Sprintf("%s is not a dicomesh audit file (bad header)", path)}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// preserveTorn appends a torn tail to the torn file before it is cut off.
func (l *Log) preserveTorn(file string, t tail) error {
	f, err := os.Open(filepath.Join(l.cfg.Dir, file))
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, t.Bytes)
	if _, err := f.ReadAt(b, t.Offset); err != nil {
		return err
	}
	tf, err := os.OpenFile(filepath.Join(l.cfg.Dir, TornFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(tf, "%s %s offset %d length %d: %s\n", l.cfg.Now().UTC().Format(time.RFC3339Nano), file, t.Offset, t.Bytes, t.Why)
	tf.Write(b)
	tf.Write([]byte("\n"))
	if err := tf.Sync(); err != nil {
		tf.Close()
		return err
	}
	return tf.Close()
}

// cutTail truncates a torn tail off f after preserving it.
func (l *Log) cutTail(f *os.File, name string, t tail) error {
	l.cfg.Logger.Warn("audit: cutting off a torn tail left by a crash", "file", name, "offset", t.Offset, "bytes", t.Bytes, "why", t.Why)
	if err := l.preserveTorn(name, t); err != nil {
		return fmt.Errorf("audit: keep torn tail of %s: %w", name, err)
	}
	if err := f.Truncate(t.Offset); err != nil {
		return fmt.Errorf("audit: truncate %s: %w", name, err)
	}
	return f.Sync()
}

// loadCheckpoints reads and verifies the checkpoint file.
func (l *Log) loadCheckpoints() error {
	r := io.NewSectionReader(l.cpf, int64(len(checkpointMagic)), 1<<62)
	t, err := scanFrames(r, int64(len(checkpointMagic)), func(off int64, p []byte) error {
		c, err := OpenCheckpoint(p, l.verifier)
		if err != nil {
			return &TamperError{Index: -1, Offset: -1, Reason: fmt.Sprintf("checkpoint %d at byte %d of %s: %v", len(l.cps), off, CheckpointFile, err)}
		}
		if n := len(l.cps); n > 0 {
			if p := l.cps[n-1]; c.Size < p.Size {
				return &TamperError{Index: int64(c.Size), Offset: -1, Reason: fmt.Sprintf("checkpoint shrinks from %d to %d", p.Size, c.Size)}
			} else if c.Size == p.Size && !bytes.Equal(c.Root, p.Root) {
				return &TamperError{Index: int64(c.Size), Offset: -1, Reason: fmt.Sprintf("fork: two checkpoints of size %d with different roots", c.Size)}
			}
		}
		l.cps = append(l.cps, c)
		return nil
	})
	if err != nil {
		return err
	}
	if t.Bytes > 0 {
		if !t.Torn {
			return &TamperError{Index: -1, Offset: -1, Reason: fmt.Sprintf("checkpoint file damaged at byte %d: %s", t.Offset, t.Why)}
		}
		if err := l.cutTail(l.cpf, CheckpointFile, t); err != nil {
			return err
		}
	}
	l.cpEnd = t.Offset
	return nil
}

// errStaleLeaves reports a leaves cache that disagrees with the log.
var errStaleLeaves = errors.New("stale leaves cache")

const leafEntrySize = 8 + hashSize

// loadLeaves builds the tree. With useCache it takes the leaf hashes from
// the leaves file, checks the last ones against the log and scans only the
// frames after them; otherwise it rebuilds everything from the log.
func (l *Log) loadLeaves(ctx context.Context, useCache bool) error {
	l.tree = tree{}
	l.offsets = l.offsets[:0]
	start := int64(len(logMagic))
	keep := 0
	if useCache {
		var err error
		keep, start, err = l.readLeavesCache()
		if err != nil {
			return err
		}
	}
	logSize, err := fileSize(l.logf)
	if err != nil {
		return err
	}
	var newEntries []byte
	r := io.NewSectionReader(l.logf, start, logSize-start)
	t, err := scanFrames(r, start, func(off int64, p []byte) error {
		if len(l.offsets)%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if _, err := decodeRecord(p, uint64(len(l.offsets))); err != nil {
			return &TamperError{Index: int64(len(l.offsets)), Offset: off, Reason: fmt.Sprintf("complete frame holds no valid record: %v", err)}
		}
		h := leafHash(p)
		l.tree.append(h[:])
		l.offsets = append(l.offsets, off)
		newEntries = binary.BigEndian.AppendUint64(newEntries, uint64(off))
		newEntries = append(newEntries, h[:]...)
		return nil
	})
	if err != nil {
		return err
	}
	n := uint64(len(l.offsets))
	if t.Bytes > 0 {
		if !t.Torn {
			return &TamperError{Index: int64(n), Offset: t.Offset, Reason: t.Why + " in a complete frame: damage or tampering, not a crash"}
		}
		if err := l.cutTail(l.logf, LogFile, t); err != nil {
			return err
		}
	}
	// Check every signed checkpoint against the tree.
	for _, c := range l.cps {
		if c.Size > n {
			return &TamperError{Index: int64(n), Offset: t.Offset, Reason: fmt.Sprintf("log has %d records but a checkpoint signs %d", n, c.Size)}
		}
		root, _ := l.tree.root(c.Size)
		if !bytes.Equal(root, c.Root) {
			if useCache {
				return errStaleLeaves
			}
			return &TamperError{Index: -1, Offset: -1, Reason: fmt.Sprintf("root at size %d differs from the signed checkpoint; run Verify to locate the record", c.Size)}
		}
	}
	// Bring the leaves cache up to date.
	entriesEnd := int64(len(leavesMagic)) + int64(keep)*leafEntrySize
	if err := l.leavesf.Truncate(entriesEnd); err != nil {
		return fmt.Errorf("audit: truncate leaves cache: %w", err)
	}
	if _, err := l.leavesf.WriteAt(newEntries, entriesEnd); err != nil {
		return fmt.Errorf("audit: write leaves cache: %w", err)
	}
	l.leavesEnd = entriesEnd + int64(len(newEntries))
	l.end = t.Offset
	l.synced = n
	l.syncedEnd = t.Offset
	return nil
}

// readLeavesCache loads the valid prefix of the leaves cache into the tree
// and returns how many entries it kept and where the log scan resumes.
func (l *Log) readLeavesCache() (keep int, resume int64, err error) {
	resume = int64(len(logMagic))
	size, err := fileSize(l.leavesf)
	if err != nil {
		return 0, 0, err
	}
	b := make([]byte, size-int64(len(leavesMagic)))
	if _, err := l.leavesf.ReadAt(b, int64(len(leavesMagic))); err != nil && err != io.EOF {
		return 0, 0, fmt.Errorf("audit: read leaves cache: %w", err)
	}
	count := len(b) / leafEntrySize
	logSize, err := fileSize(l.logf)
	if err != nil {
		return 0, 0, err
	}
	// Offsets must start after the header and increase by plausible frame
	// sizes; keep the prefix that does.
	prev := int64(-1)
	for i := range count {
		off := int64(binary.BigEndian.Uint64(b[i*leafEntrySize:]))
		if (i == 0 && off != int64(len(logMagic))) || (i > 0 && (off-prev < frameOverhead+1 || off-prev > frameOverhead+MaxRecordSize)) || off >= logSize {
			count = i
			break
		}
		prev = off
	}
	// The last entries may describe frames that never reached the disk:
	// walk back until one matches the log.
	frame := make([]byte, frameOverhead+MaxRecordSize)
	for tries := 0; count > 0; tries++ {
		if tries == 64 {
			return 0, 0, errStaleLeaves
		}
		e := b[(count-1)*leafEntrySize:]
		off := int64(binary.BigEndian.Uint64(e))
		n, _ := l.logf.ReadAt(frame, off)
		p, fsize, st, _ := parseFrame(frame[:n])
		if st == frameOK && leafHash(p) == [hashSize]byte(e[8:leafEntrySize]) {
			resume = off + int64(fsize)
			break
		}
		count--
	}
	l.offsets = make([]int64, 0, count+1024)
	for i := range count {
		e := b[i*leafEntrySize:]
		l.offsets = append(l.offsets, int64(binary.BigEndian.Uint64(e)))
		l.tree.append(e[8:leafEntrySize])
	}
	return count, resume, nil
}

func fileSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("audit: stat %s: %w", f.Name(), err)
	}
	return fi.Size(), nil
}

// Append stamps r with the time (Config.Now, in UTC), appends it and returns
// its index once it is durable (fsynced). Concurrent appends share fsyncs
// (group commit).
//
// Fail-closed contract: the operation being audited must not proceed unless
// Append returned a nil error. A non-nil error means the record may or may
// not be in the log (over-recording is acceptable, an unrecorded operation
// is not); a caller must not retry a refused operation by skipping the
// audit. After a write or sync failure every later Append fails with
// ErrFailed until the log is reopened. Invalid records fail with
// ErrInvalidRecord and nothing is written.
func (l *Log) Append(ctx context.Context, r Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("audit: append: %w", err)
	}
	r.Time = l.cfg.Now().UTC().Round(0)
	payload, err := encodeRecord(&r)
	if err != nil {
		return 0, err
	}
	frame := appendFrame(make([]byte, 0, len(payload)+frameOverhead), payload)
	h := leafHash(payload)
	l.mu.Lock()
	index, err := l.writeLocked(frame, h)
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := l.syncTo(index + 1); err != nil {
		return 0, err
	}
	return index, nil
}

func (l *Log) usableLocked() error {
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return fmt.Errorf("%w: %w", ErrFailed, l.err)
	}
	return nil
}

func (l *Log) failLocked(err error) error {
	if l.err == nil {
		l.err = err
		l.cfg.Logger.Error("audit: log write failed; refusing further records until reopened", "dir", l.cfg.Dir, "err", err)
	}
	return fmt.Errorf("%w: %w", ErrFailed, err)
}

func (l *Log) writeLocked(frame []byte, h [hashSize]byte) (uint64, error) {
	if err := l.usableLocked(); err != nil {
		return 0, err
	}
	if _, err := l.logf.WriteAt(frame, l.end); err != nil {
		return 0, l.failLocked(fmt.Errorf("write record: %w", err))
	}
	index := l.tree.size()
	l.offsets = append(l.offsets, l.end)
	l.tree.append(h[:])
	if !l.leavesStale {
		var e [leafEntrySize]byte
		binary.BigEndian.PutUint64(e[:], uint64(l.end))
		copy(e[8:], h[:])
		if _, err := l.leavesf.WriteAt(e[:], l.leavesEnd); err != nil {
			l.leavesStale = true
			l.cfg.Logger.Warn("audit: leaves cache not written; it will be rebuilt on open", "err", err)
		}
		l.leavesEnd += leafEntrySize
	}
	l.end += int64(len(frame))
	return index, nil
}

// syncTo makes the first n records durable, sharing one fsync among all the
// appends waiting, and signs a checkpoint when one is due.
func (l *Log) syncTo(n uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.synced >= n {
		l.mu.Unlock()
		return nil
	}
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	target, end := l.tree.size(), l.end
	l.mu.Unlock()
	if err := l.logf.Sync(); err != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.failLocked(fmt.Errorf("sync: %w", err))
	}
	l.mu.Lock()
	l.synced, l.syncedEnd = target, end
	var last uint64
	if len(l.cps) > 0 {
		last = l.cps[len(l.cps)-1].Size
	}
	l.mu.Unlock()
	if target-last >= l.cfg.CheckpointEvery {
		if _, err := l.checkpoint(target); err != nil {
			return err
		}
	}
	return nil
}

// checkpoint signs and durably writes a checkpoint of the first size
// records, which must be durable. Called with syncMu held, or during Open.
func (l *Log) checkpoint(size uint64) (Checkpoint, error) {
	l.mu.Lock()
	root, err := l.tree.root(size)
	l.mu.Unlock()
	if err != nil {
		return Checkpoint{}, err
	}
	c, err := signCheckpoint(l.signer, size, root)
	if err != nil {
		return Checkpoint{}, err
	}
	frame := appendFrame(nil, c.Note)
	_, err = l.cpf.WriteAt(frame, l.cpEnd)
	if err == nil {
		err = l.cpf.Sync()
	}
	if err != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		return Checkpoint{}, l.failLocked(fmt.Errorf("write checkpoint: %w", err))
	}
	l.mu.Lock()
	l.cpEnd += int64(len(frame))
	l.cps = append(l.cps, c)
	l.mu.Unlock()
	if l.cfg.OnCheckpoint != nil {
		l.cfg.OnCheckpoint(c)
	}
	return c, nil
}

// Checkpoint makes every appended record durable and signs a checkpoint of
// them, unless the latest checkpoint already covers them; it returns the
// latest checkpoint.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, err
	}
	l.mu.Lock()
	n := l.tree.size()
	l.mu.Unlock()
	if err := l.syncTo(n); err != nil {
		return Checkpoint{}, err
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return Checkpoint{}, err
	}
	synced := l.synced
	var last Checkpoint
	if len(l.cps) > 0 {
		last = l.cps[len(l.cps)-1]
	}
	l.mu.Unlock()
	if len(last.Note) > 0 && last.Size == synced {
		return last, nil
	}
	return l.checkpoint(synced)
}

// Size returns the number of records appended.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.size()
}

// Origin returns the checkpoint origin (and key name).
func (l *Log) Origin() string { return l.signer.Name() }

// Checkpoints returns the signed checkpoints, oldest first.
func (l *Log) Checkpoints() []Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Checkpoint(nil), l.cps...)
}

// Root returns the Merkle root hash of the first size records.
func (l *Log) Root(size uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.root(size)
}

// InclusionProof returns the RFC 6962 inclusion proof of record index in
// the tree of the first size records.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.inclusion(index, size)
}

// ConsistencyProof returns the RFC 6962 consistency proof from the tree of
// size1 records to the tree of size2 records, as checked by
// VerifyConsistency.
func (l *Log) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.consistency(size1, size2)
}

// LeafHash returns the RFC 6962 leaf hash of record index.
func (l *Log) LeafHash(index uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index >= l.tree.size() {
		return nil, fmt.Errorf("audit: leaf %d: %w of size %d", index, errTreeRange, l.tree.size())
	}
	return bytes.Clone(l.tree.leaf(index)), nil
}

// Close makes every record durable, signs a final checkpoint if records
// follow the last one, and closes the files.
func (l *Log) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	failed := l.err
	n, end := l.tree.size(), l.end
	var last uint64
	if len(l.cps) > 0 {
		last = l.cps[len(l.cps)-1].Size
	}
	l.mu.Unlock()
	var errs []error
	if failed == nil {
		if err := l.logf.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("audit: sync log: %w", err))
		} else {
			l.mu.Lock()
			l.synced, l.syncedEnd = n, end
			l.mu.Unlock()
			if n > last || last == 0 && n == 0 && len(l.cps) == 0 {
				if _, err := l.checkpoint(n); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := l.leavesf.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("audit: sync leaves cache: %w", err))
	}
	errs = append(errs, l.closeFiles())
	return errors.Join(errs...)
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{l.logf, l.cpf, l.leavesf} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// readRecord reads record i from the file and checks it against the tree.
func (l *Log) readRecord(i uint64, buf []byte) (Record, []byte, error) {
	l.mu.Lock()
	if err := l.closedLocked(); err != nil {
		l.mu.Unlock()
		return Record{}, buf, err
	}
	if i >= uint64(len(l.offsets)) {
		l.mu.Unlock()
		return Record{}, buf, fmt.Errorf("audit: record %d: %w of size %d", i, errTreeRange, len(l.offsets))
	}
	off, end := l.offsets[i], l.end
	if i+1 < uint64(len(l.offsets)) {
		end = l.offsets[i+1]
	}
	want := [hashSize]byte(l.tree.leaf(i))
	l.mu.Unlock()
	size := int(end - off)
	if size < frameOverhead+1 || size > frameOverhead+MaxRecordSize {
		return Record{}, buf, &TamperError{Index: int64(i), Offset: off, Reason: "frame size out of range"}
	}
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := l.logf.ReadAt(buf, off); err != nil {
		return Record{}, buf, fmt.Errorf("audit: read record %d: %w", i, err)
	}
	p, _, st, why := parseFrame(buf)
	if st != frameOK {
		return Record{}, buf, &TamperError{Index: int64(i), Offset: off, Reason: why}
	}
	if leafHash(p) != want {
		return Record{}, buf, &TamperError{Index: int64(i), Offset: off, Reason: "record differs from its leaf in the Merkle tree"}
	}
	r, err := decodeRecord(p, i)
	if err != nil {
		return Record{}, buf, &TamperError{Index: int64(i), Offset: off, Reason: fmt.Sprintf("record does not decode: %v", err)}
	}
	return r, buf, nil
}

func (l *Log) closedLocked() error {
	if l.closed {
		return ErrClosed
	}
	return nil
}

// lastSizeLocked is the size of the latest checkpoint, or 0.
func (l *Log) lastSizeLocked() uint64 {
	if len(l.cps) == 0 {
		return 0
	}
	return l.cps[len(l.cps)-1].Size
}
