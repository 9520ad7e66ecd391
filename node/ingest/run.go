package ingest

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dicomesh/dicomesh/node/archive"
)

// Config configures Run.
type Config struct {
	Archive *archive.Archive
	// QuarantineDir receives a copy of every rejected file, in a folder per run.
	QuarantineDir string
	// Workers is how many files are parsed and stored at once.
	Workers int
	// MaxFileBytes bounds one file (and one zip entry).
	MaxFileBytes int64
	// MaxZipBytes bounds what one zip archive may expand to.
	MaxZipBytes int64
	Logger      *slog.Logger
	// Progress, if not nil, is called after each file, from one goroutine
	// at a time.
	Progress func(Progress)
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults; Archive and QuarantineDir must be set.
func DefaultConfig() Config {
	return Config{Workers: 4, MaxFileBytes: 2 << 30, MaxZipBytes: 64 << 30}
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
	case c.MaxFileBytes < 1 || c.MaxZipBytes < 1:
		return errors.New("ingest: size limits must be positive")
	}
	return nil
}

// Progress reports how far a run has got.
type Progress struct {
	Files, Done, Bytes int64
	Path               string
}

// Rejection is one file that was not stored.
type Rejection struct {
	Path   string
	Err    error
	KeptAt string // where a copy was kept, if it could be
}

// Report summarizes a run.
type Report struct {
	Stored     int
	Duplicates int
	Skipped    int
	Bytes      int64 // bytes of newly stored instances
	Rejected   []Rejection
	Studies    []archive.Study // committed by this run
}

// OK reports whether nothing was rejected.
func (r Report) OK() bool { return len(r.Rejected) == 0 }

// source is one candidate file: on disk or inside a zip.
type source struct {
	path string
	size int64
	open func() ([]byte, error)
}

// Run ingests everything under paths. It returns an error only when the run
// could not go on (the archive failed, the context ended); per-file problems
// are in the report. Studies are committed when every file was seen; a failed
// or cancelled run commits nothing it had not committed.
func Run(ctx context.Context, cfg Config, paths ...string) (Report, error) {
	var rep Report
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &run{cfg: cfg, txs: map[string]*archive.Tx{}}
	defer func() {
		for _, c := range r.closers {
			c.Close()
		}
	}()
	var sources []source
	for _, p := range paths {
		s, err := r.discover(p)
		if err != nil {
			return rep, err
		}
		sources = append(sources, s...)
	}
	r.total = int64(len(sources))

	jobs := make(chan source)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if err := r.one(ctx, s); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for _, s := range sources {
		select {
		case jobs <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		for _, tx := range r.txs {
			tx.Rollback()
		}
		return r.rep, fmt.Errorf("ingest: %w", err)
	}
	for uid, tx := range r.txs {
		st, err := tx.Commit(ctx)
		if err != nil {
			for _, t := range r.txs {
				t.Rollback()
			}
			return r.rep, fmt.Errorf("ingest: commit study %s: %w", uid, err)
		}
		if st.UID != "" {
			r.rep.Studies = append(r.rep.Studies, st)
		}
	}
	return r.rep, nil
}

type run struct {
	cfg   Config
	total int64

	mu      sync.Mutex // guards txs, rep, qdir
	txs     map[string]*archive.Tx
	rep     Report
	qdir    string
	closers []io.Closer

	pmu   sync.Mutex // guards done and bytes; serializes cfg.Progress
	done  int64
	bytes int64
}

// discover lists the candidate files under path.
func (r *run) discover(path string) ([]source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if !fi.IsDir() {
		return r.file(path, fi.Size())
	}
	var out []source
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		s, err := r.file(p, info.Size())
		out = append(out, s...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return out, nil
}

// file turns one file on disk into sources: itself, or the entries of a zip.
func (r *run) file(path string, size int64) ([]source, error) {
	if strings.EqualFold(filepath.Ext(path), ".zip") {
		return r.zipEntries(path)
	}
	max := r.cfg.MaxFileBytes
	return []source{{path: path, size: size, open: func() ([]byte, error) {
		if size > max {
			return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, size, max)
		}
		return os.ReadFile(path)
	}}}, nil
}

// zipEntries lists a zip's files. Entries are read into memory, never
// extracted, so names cannot escape; sizes are bounded per entry and in total
// by what is actually decompressed, not by what the archive declares.
func (r *run) zipEntries(path string) ([]source, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return []source{{path: path, open: func() ([]byte, error) {
			return nil, fmt.Errorf("%w: unreadable zip: %v", ErrMalformed, err)
		}}}, nil
	}
	var (
		out    []source
		mu     sync.Mutex
		budget = r.cfg.MaxZipBytes
	)
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		f := f
		out = append(out, source{path: path + "!" + f.Name, open: func() ([]byte, error) {
			rc, err := f.Open()
			if err != nil {
				return nil, fmt.Errorf("%w: zip entry: %v", ErrMalformed, err)
			}
			defer rc.Close()
			data, err := io.ReadAll(io.LimitReader(rc, r.cfg.MaxFileBytes+1))
			if err != nil {
				return nil, fmt.Errorf("%w: zip entry: %v", ErrMalformed, err)
			}
			if int64(len(data)) > r.cfg.MaxFileBytes {
				return nil, fmt.Errorf("%w: zip entry expands past %d bytes", ErrTooLarge, r.cfg.MaxFileBytes)
			}
			mu.Lock()
			budget -= int64(len(data))
			over := budget < 0
			mu.Unlock()
			if over {
				return nil, fmt.Errorf("%w: zip archive expands past %d bytes", ErrTooLarge, r.cfg.MaxZipBytes)
			}
			return data, nil
		}})
	}
	r.closers = append(r.closers, zr)
	return out, nil
}

// one parses and stores one source. It returns an error only for failures
// that must stop the run.
func (r *run) one(ctx context.Context, s source) error {
	data, err := s.open()
	if err == nil {
		var m archive.InstanceMeta
		m, err = Parse(data)
		if err == nil {
			return r.store(ctx, s, m, data)
		}
	}
	switch {
	case errors.Is(err, ErrNotDICOM), errors.Is(err, ErrDirectory):
		r.mu.Lock()
		r.rep.Skipped++
		r.mu.Unlock()
	default:
		r.reject(s, data, err)
	}
	r.progress(s, 0)
	return nil
}

func (r *run) store(ctx context.Context, s source, m archive.InstanceMeta, data []byte) error {
	r.mu.Lock()
	tx, ok := r.txs[m.StudyInstanceUID]
	if !ok {
		var err error
		tx, err = r.cfg.Archive.Begin(m.StudyInstanceUID)
		if err != nil {
			r.mu.Unlock()
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

// progress counts a finished file and reports it. Calls to cfg.Progress are
// serialized and their counts only grow.
func (r *run) progress(s source, n int64) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.done++
	r.bytes += n
	if r.cfg.Progress != nil {
		r.cfg.Progress(Progress{Files: r.total, Done: r.done, Bytes: r.bytes, Path: s.path})
	}
}

// reject records a rejected file and keeps a copy of it aside.
func (r *run) reject(s source, data []byte, cause error) {
	rej := Rejection{Path: s.path, Err: cause}
	r.mu.Lock()
	defer r.mu.Unlock()
	if kept, err := r.keep(s, data, cause); err != nil {
		r.cfg.Logger.Warn("could not keep rejected file aside", "err", err)
	} else {
		rej.KeptAt = kept
	}
	r.rep.Rejected = append(r.rep.Rejected, rej)
}

// keep copies a rejected file into this run's quarantine folder and appends
// the reason to reasons.txt there. r.mu is held.
func (r *run) keep(s source, data []byte, cause error) (string, error) {
	if r.qdir == "" {
		dir := filepath.Join(r.cfg.QuarantineDir, r.cfg.Now().UTC().Format("20060102T150405.000000000Z"))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		r.qdir = dir
	}
	name := fmt.Sprintf("%04d-%s", len(r.rep.Rejected)+1, sanitize(filepath.Base(s.path)))
	dst := filepath.Join(r.qdir, name)
	if data == nil && !strings.Contains(s.path, "!") {
		// Never read (too large or unreadable): the original stays where it is.
		dst, name = s.path, "(left in place)"
	} else if err := os.WriteFile(dst, data, 0o600); err != nil {
		return "", err
	}
	f, err := os.OpenFile(filepath.Join(r.qdir, "reasons.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s\t%s\t%v\n", name, s.path, cause); err != nil {
		return "", err
	}
	return dst, nil
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == '!' || r < 0x20 {
			return '_'
		}
		return r
	}, name)
}
