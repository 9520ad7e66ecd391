package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/dicomesh/dicomesh/node/archive"
)

// Config configures Run.
type Config struct {
	// Archive receives the instances.
	Archive *archive.Archive
	// QuarantineDir receives a copy of every rejected file, in a folder per
	// run, with a reasons.txt.
	QuarantineDir string
	// Workers is how many files are read, parsed and stored at once.
	Workers int
	// MaxMemoryBytes bounds the file data a run holds in memory at once,
	// over all workers: a worker reserves a file's size before reading it
	// and waits while the budget is spent. A file larger than the budget is
	// read alone. Storing an instance needs about twice its size again
	// while it is compressed and encrypted.
	MaxMemoryBytes int64
	// MaxFileBytes bounds one file and one zip entry.
	MaxFileBytes int64
	// MaxZipBytes bounds what one zip archive may expand to.
	MaxZipBytes int64
	// MaxZipRatio bounds what one zip archive may expand to relative to its
	// size (the bound is never below 64 MiB).
	MaxZipRatio int
	// MaxZipEntries bounds the entries of one zip archive.
	MaxZipEntries int
	// Logger receives operational messages (paths, UIDs, reasons; never
	// PHI). Nil discards them.
	Logger *slog.Logger
	// Progress, if not nil, is called after each file, from one goroutine at
	// a time, with counts that only grow.
	Progress func(Progress)
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults; Archive and QuarantineDir must be set.
func DefaultConfig() Config {
	return Config{
		Workers:        4,
		MaxMemoryBytes: 1 << 30,
		MaxFileBytes:   2 << 30,
		MaxZipBytes:    64 << 30,
		MaxZipRatio:    100,
		MaxZipEntries:  1 << 17,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.Archive == nil:
		return errors.New("ingest: no archive")
	case c.QuarantineDir == "":
		return errors.New("ingest: no quarantine folder")
	case c.Workers < 1:
		return errors.New("ingest: workers must be at least 1")
	case c.MaxMemoryBytes < 1<<20:
		return errors.New("ingest: the memory budget must be at least 1 MiB")
	case c.MaxFileBytes < metaStart:
		return fmt.Errorf("ingest: max file bytes must be at least %d", metaStart)
	case c.MaxZipBytes < 1 || c.MaxZipRatio < 1 || c.MaxZipEntries < 1:
		return errors.New("ingest: zip limits must be positive")
	}
	return nil
}

// Progress reports how far a run has got.
type Progress struct {
	Files int64  // candidate files found
	Done  int64  // files finished: stored, duplicate, skipped or rejected
	Bytes int64  // bytes of the files stored or found duplicate so far
	Path  string // the file just finished
}

// Rejection is one file that was not stored.
type Rejection struct {
	Path string
	// Err is a *RejectError wrapping one of the sentinels.
	Err error
	// KeptAt is where a copy was kept, or the file itself when it was too
	// large or unreadable to copy; "" when there is nothing to keep (a file
	// a DICOMDIR references but that is missing).
	KeptAt string
}

// Report summarizes a run.
type Report struct {
	Stored     int   // instances newly stored
	Duplicates int   // instances the archive already held
	Skipped    int   // files that are not DICOM, and DICOMDIRs inside zips
	Bytes      int64 // bytes of the newly stored instances
	Rejected   []Rejection
	Studies    []archive.Study // committed by this run, by UID
}

// OK reports whether nothing was rejected.
func (r Report) OK() bool { return len(r.Rejected) == 0 }

// Run ingests everything under paths: files, folders (recursively), DICOMDIR
// media and zip archives. Instances are stored in one archive transaction per
// study, committed once every file was seen. Per-file problems go into the
// report and the run goes on. Run returns an error only when it cannot go on:
// a path that does not exist, an archive failure, the context ending. Then
// the transactions it had not committed are rolled back.
func Run(ctx context.Context, cfg Config, paths ...string) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &run{cfg: cfg, txs: map[string]*archive.Tx{}, kept: map[string]bool{}, mem: semaphore.NewWeighted(cfg.MaxMemoryBytes)}
	defer func() {
		for _, c := range r.closers {
			c.Close()
		}
	}()
	d := &discovery{r: r, seen: map[string]bool{}}
	for _, p := range paths {
		if err := d.path(p); err != nil {
			return Report{}, fmt.Errorf("ingest: %w", err)
		}
	}
	r.total = int64(len(d.out))

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan source)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for s := range jobs {
				if err := r.one(ctx, s); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, s := range d.out {
		select {
		case jobs <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()

	uids := make([]string, 0, len(r.txs))
	for uid := range r.txs {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	rollback := func(from int) {
		for _, uid := range uids[from:] {
			r.txs[uid].Rollback()
		}
	}
	if err := context.Cause(ctx); err != nil {
		rollback(0)
		return r.rep, fmt.Errorf("ingest: %w", err)
	}
	for i, uid := range uids {
		st, err := r.txs[uid].Commit(ctx)
		if err != nil {
			rollback(i + 1)
			return r.rep, fmt.Errorf("ingest: commit study %s: %w", uid, err)
		}
		if st.UID != "" {
			r.rep.Studies = append(r.rep.Studies, st)
		}
	}
	return r.rep, nil
}

type run struct {
	cfg     Config
	mem     *semaphore.Weighted // the memory budget, in bytes
	total   int64
	closers []io.Closer

	mu   sync.Mutex // guards txs, rep, qdir, kept
	txs  map[string]*archive.Tx
	rep  Report
	qdir string
	kept map[string]bool // names used in qdir

	pmu   sync.Mutex // guards done and bytes; serializes cfg.Progress
	done  int64
	bytes int64
}

// one reads, parses and stores one source. It returns an error only for
// failures that must stop the run.
func (r *run) one(ctx context.Context, s source) error {
	// Reserve the file's size (at least a little, at most the whole
	// budget) for as long as its bytes are held.
	w := min(max(s.size, 64<<10), r.cfg.MaxMemoryBytes)
	if err := r.mem.Acquire(ctx, w); err != nil {
		return nil // the run is ending
	}
	defer r.mem.Release(w)
	data, err := s.open()
	defer releaseRead(data) // nothing keeps data once it is stored or set aside
	if err == nil {
		var m archive.InstanceMeta
		if m, err = Parse(data); err == nil {
			err = r.store(ctx, s, m, data)
			if err == nil || !errors.Is(err, ErrBusy) {
				return err
			}
		}
	}
	switch {
	case errors.Is(err, ErrNotDICOM), errors.Is(err, ErrDirectory):
		r.mu.Lock()
		r.rep.Skipped++
		r.mu.Unlock()
	default:
		r.reject(s, data, withPath(err, s.path))
	}
	r.progress(s, 0)
	return nil
}

func (r *run) store(ctx context.Context, s source, m archive.InstanceMeta, data []byte) error {
	r.mu.Lock()
	tx, ok := r.txs[m.StudyInstanceUID]
	if !ok {
		var err error
		if tx, err = r.cfg.Archive.Begin(m.StudyInstanceUID); err != nil {
			r.mu.Unlock()
			if errors.Is(err, archive.ErrBusy) {
				return &RejectError{Err: fmt.Errorf("%w: %w", ErrBusy, err),
					Reason: fmt.Sprintf("study %s is being written by another import", m.StudyInstanceUID)}
			}
			return fmt.Errorf("begin study %s: %w", m.StudyInstanceUID, err)
		}
		r.txs[m.StudyInstanceUID] = tx
	}
	r.mu.Unlock()
	added, err := tx.Add(ctx, m, data)
	if err != nil {
		return fmt.Errorf("store %s: %w", s.path, err)
	}
	r.mu.Lock()
	if added {
		r.rep.Stored++
		r.rep.Bytes += int64(len(data))
	} else {
		r.rep.Duplicates++
	}
	r.mu.Unlock()
	r.progress(s, int64(len(data)))
	return nil
}

// progress counts a finished file and reports it.
func (r *run) progress(s source, n int64) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.done++
	r.bytes += n
	if r.cfg.Progress != nil {
		r.cfg.Progress(Progress{Files: r.total, Done: r.done, Bytes: r.bytes, Path: s.path})
	}
}

// reject records a rejected file and keeps it aside.
func (r *run) reject(s source, data []byte, err *RejectError) {
	rej := Rejection{Path: s.path, Err: err}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept, kerr := r.keep(s, data, err)
	if kerr != nil {
		r.cfg.Logger.Warn("could not keep a rejected file aside", "path", s.path, "err", kerr)
		if data == nil {
			kept = s.disk
		}
	}
	rej.KeptAt = kept
	r.rep.Rejected = append(r.rep.Rejected, rej)
	r.cfg.Logger.Info("rejected", "path", s.path, "reason", err.Error())
}

// keep copies a rejected file into this run's quarantine folder, under its
// own name, and appends a line to reasons.txt there. A file that was never
// read (too large, unreadable) stays where it is. r.mu is held.
func (r *run) keep(s source, data []byte, cause error) (string, error) {
	if r.qdir == "" {
		if err := os.MkdirAll(r.cfg.QuarantineDir, 0o700); err != nil {
			return "", err
		}
		dir, err := os.MkdirTemp(r.cfg.QuarantineDir, r.cfg.Now().UTC().Format("20060102T150405Z")+"-")
		if err != nil {
			return "", err
		}
		r.qdir = dir
		r.kept["reasons.txt"] = true
	}
	name, kept := "-", s.disk
	if data != nil {
		name = r.name(s.path)
		kept = filepath.Join(r.qdir, name)
		if err := os.WriteFile(kept, data, 0o600); err != nil {
			return "", err
		}
	}
	f, err := os.OpenFile(filepath.Join(r.qdir, "reasons.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line := strings.Join([]string{name, s.path, cause.Error()}, "\t")
	line = strings.Map(func(c rune) rune {
		if c == '\n' || c == '\r' {
			return ' '
		}
		return c
	}, line)
	if _, err := fmt.Fprintln(f, line); err != nil {
		return "", err
	}
	return kept, nil
}

// name picks the quarantine name for path: its base name, made unique
// within the run with a "~n" suffix. r.mu is held.
func (r *run) name(path string) string {
	base := baseName(path)
	if i := strings.LastIndexByte(base, '!'); i >= 0 {
		base = base[i+1:]
	}
	base = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7F || c == ':' {
			return '_'
		}
		return c
	}, base)
	if base == "" || base == "." || base == ".." {
		base = "file"
	}
	name := base
	for n := 2; r.kept[name]; n++ {
		name = fmt.Sprintf("%s~%d", base, n)
	}
	r.kept[name] = true
	return name
}
