package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// fileStore is a blockstore with one file per block, named by the CID in
// base32 and sharded like flatfs's next-to-last/2 (1024 directories, all
// created at open). A block file appears under its name only complete: it is
// written to a temporary file that is renamed. Every read is re-hashed
// against its CID, so a corrupted block is an error, never data.
//
// Put is durable on return (file and directory synced). The archive's own
// writes use put, which leaves syncing to a syncBatch, so that many files are
// synced in parallel with the work of producing them.
type fileStore struct {
	dir  string
	mode syncMode
	puts atomic.Int64 // block files created, for tests
}

var _ blockstore.Blockstore = (*fileStore)(nil)

// shardChars is the base32 alphabet of CID strings, which shard names use.
const shardChars = "abcdefghijklmnopqrstuvwxyz234567"

func newFileStore(dir string, mode syncMode) (*fileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	created := false
	for _, a := range shardChars {
		for _, b := range shardChars {
			p := filepath.Join(dir, string(a)+string(b))
			if _, err := os.Stat(p); err == nil {
				continue
			}
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
			created = true
		}
	}
	if created && mode != syncNone {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	return &fileStore{dir: dir, mode: mode}, nil
}

func (s *fileStore) path(c cid.Cid) (shard, file string) {
	k := c.String()
	shard = filepath.Join(s.dir, k[len(k)-3:len(k)-1])
	return shard, filepath.Join(shard, k)
}

func (s *fileStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	_, p := s.path(c)
	_, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// ErrCorrupt is wrapped by the error of reading a block whose content no
// longer matches its CID.
var ErrCorrupt = errors.New("archive: block corrupted on disk")

func (s *fileStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	data, err := s.readFile(c, nil, -1)
	if err != nil {
		return nil, err
	}
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	if !got.Equals(c) {
		return nil, fmt.Errorf("%w: block %s hashes to %s", ErrCorrupt, c, got)
	}
	return blocks.NewBlockWithCid(data, c)
}

// maxChunk bounds a chunk read without its hash: objects are cut into
// BlockSize chunks, and a larger file is damage, not data.
const maxChunk = 4 * BlockSize

// readChunkFile reads a raw block's bytes into buf (grown as needed) without
// checking them against the CID: for ciphertext that is authenticated when
// it is decrypted.
func (s *fileStore) readChunkFile(c cid.Cid, buf []byte) ([]byte, error) {
	if c.Type() != cid.Raw {
		return nil, fmt.Errorf("read chunk %s: not a raw block", c)
	}
	return s.readFile(c, buf, maxChunk)
}

// ReadBlock reads a block's stored bytes into buf (grown as needed)
// without checking them against the CID (blocks.Reader): for serving
// blocks to peers, which verify each one.
func (s *fileStore) ReadBlock(_ context.Context, c cid.Cid, buf []byte) ([]byte, error) {
	return s.readFile(c, buf, maxChunk)
}

// readFile reads the file of block c into buf (grown as needed); a file of
// more than max bytes (max >= 0) is refused before it is read.
func (s *fileStore) readFile(c cid.Cid, buf []byte, max int64) ([]byte, error) {
	_, p := s.path(c)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	if max >= 0 && fi.Size() > max {
		return nil, fmt.Errorf("%w: block %s is %d bytes", ErrCorrupt, c, fi.Size())
	}
	if int64(cap(buf)) < fi.Size() {
		buf = make([]byte, fi.Size())
	}
	buf = buf[:fi.Size()]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	return buf, nil
}

func (s *fileStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	_, p := s.path(c)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return -1, err
	}
	return int(fi.Size()), nil
}

// Put stores a block durably. The CID must be one the archive writes
// (CIDv1, sha2-256) and must match the data.
func (s *fileStore) Put(ctx context.Context, b blocks.Block) error {
	if err := checkBlock(b); err != nil {
		return err
	}
	var batch syncBatch
	batch.init(s.mode)
	if err := s.put(b.Cid(), b.RawData(), &batch); err != nil {
		batch.wait()
		return err
	}
	return batch.wait()
}

// checkBlock refuses blocks of another profile, or whose data do not match.
func checkBlock(b blocks.Block) error {
	c := b.Cid()
	if err := checkProfile(c); err != nil {
		return err
	}
	got, err := c.Prefix().Sum(b.RawData())
	if err != nil {
		return fmt.Errorf("put block %s: %w", c, err)
	}
	if !got.Equals(c) {
		return fmt.Errorf("put block %s: data hash to %s", c, got)
	}
	return nil
}

// checkProfile refuses CIDs other than the archive's: CIDv1, sha2-256, raw
// or dag-pb.
func checkProfile(c cid.Cid) error {
	p := c.Prefix()
	if p.Version != 1 || p.MhType != rawPrefix.MhType || (p.Codec != cid.Raw && p.Codec != cid.DagProtobuf) {
		return fmt.Errorf("put block %s: not a CIDv1 sha2-256 raw or dag-pb block", c)
	}
	return nil
}

func (s *fileStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	var batch syncBatch
	batch.init(s.mode)
	for _, b := range bs {
		if err := checkBlock(b); err != nil {
			batch.wait()
			return err
		}
		if err := s.put(b.Cid(), b.RawData(), &batch); err != nil {
			batch.wait()
			return err
		}
	}
	return batch.wait()
}

// put writes a block unless it is already stored, and hands the new file to
// batch to be synced. The caller vouches that c is the CID of data.
func (s *fileStore) put(c cid.Cid, data []byte, batch *syncBatch) error {
	shard, p := s.path(c)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	f, err := os.CreateTemp(shard, ".tmp-*")
	if err != nil {
		return fmt.Errorf("put block %s: %w", c, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("put block %s: %w", c, err)
	}
	s.puts.Add(1)
	batch.file(f, shard)
	return nil
}

func (s *fileStore) DeleteBlock(_ context.Context, c cid.Cid) error {
	_, p := s.path(c)
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// AllKeysChan lists every stored block. Leftover temporary files are not
// blocks and are skipped.
func (s *fileStore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid, 64)
	go func() {
		defer close(ch)
		s.walk(ctx, func(c cid.Cid, _ string) bool {
			if !c.Defined() {
				return true
			}
			select {
			case ch <- c:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	return ch, nil
}

// walk calls fn for every block file and for every leftover temporary file
// (with an undefined CID) until fn returns false.
func (s *fileStore) walk(ctx context.Context, fn func(c cid.Cid, path string) bool) error {
	shards, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(s.dir, sh.Name()))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p := filepath.Join(s.dir, sh.Name(), e.Name())
			if strings.HasPrefix(e.Name(), ".tmp-") {
				if !fn(cid.Undef, p) {
					return nil
				}
				continue
			}
			c, err := cid.Decode(e.Name())
			if err != nil {
				continue
			}
			if !fn(c, p) {
				return nil
			}
		}
	}
	return nil
}

// syncMode is how a syncBatch makes its files durable.
type syncMode uint8

const (
	// syncFiles syncs every block file, a few at a time in the background
	// while more are written, then the directories that received them.
	// Syncs in flight together share the file system's journal commits.
	syncFiles syncMode = iota
	// syncFilesystem makes the whole batch durable with one syncfs(2) on
	// the block store's file system at the end (Linux): far fewer journal
	// commits, but it also flushes what other programs wrote there.
	syncFilesystem
	// syncNone syncs nothing: tests and measurements only.
	syncNone
)

// syncBatch makes the block files written for one Tx durable.
type syncBatch struct {
	mode syncMode
	sem  chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	dirs   map[string]bool
	handle *os.File // syncFilesystem: one open file on the file system
	err    error
}

// syncParallel bounds the files of one batch being synced at once.
const syncParallel = 16

func (b *syncBatch) init(mode syncMode) {
	b.mode = mode
	b.sem = make(chan struct{}, syncParallel)
	b.dirs = map[string]bool{}
}

// file takes ownership of f, a block file just written in dir: it is synced
// (now or by wait) and closed.
func (b *syncBatch) file(f *os.File, dir string) {
	b.mu.Lock()
	b.dirs[dir] = true
	if b.mode == syncFilesystem && b.handle == nil {
		b.handle = f
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	if b.mode != syncFiles {
		if b.mode == syncFilesystem {
			startWriteback(f)
		}
		f.Close()
		return
	}
	b.sem <- struct{}{}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		<-b.sem
		if err != nil {
			b.fail(fmt.Errorf("sync block file: %w", err))
		}
	}()
}

func (b *syncBatch) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// wait returns once every file handed over so far and the directories they
// are in are durable, with the first error met.
func (b *syncBatch) wait() error {
	b.wg.Wait()
	b.mu.Lock()
	dirs, h := b.dirs, b.handle
	b.dirs, b.handle = map[string]bool{}, nil
	b.mu.Unlock()
	switch {
	case h != nil:
		// syncfs writes back every dirty file and directory of the file
		// system and waits for it: the block files and their directory
		// entries included.
		err := syncFS(h)
		if cerr := h.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.fail(fmt.Errorf("sync block store file system: %w", err))
		}
	case b.mode == syncFiles:
		for d := range dirs {
			b.sem <- struct{}{}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				err := syncDir(d)
				<-b.sem
				if err != nil {
					b.fail(fmt.Errorf("sync block directory: %w", err))
				}
			}()
		}
		b.wg.Wait()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
