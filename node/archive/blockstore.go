package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/ipfs/boxo/blockstore"
)

// fileStore is a blockstore with one file per block, sharded by the last two
// characters of the CID. Writes go to a temporary file that is synced and
// renamed; the shard directories touched are synced by Flush. Every read is
// re-hashed against its CID, so a corrupted block is an error, never data.
type fileStore struct {
	dir    string
	noSync bool

	mu    sync.Mutex
	dirty map[string]bool // shard directories with renames not yet synced
}

var _ blockstore.Blockstore = (*fileStore)(nil)

func newFileStore(dir string, noSync bool) (*fileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &fileStore{dir: dir, noSync: noSync, dirty: map[string]bool{}}, nil
}

func (s *fileStore) path(c cid.Cid) (shard, file string) {
	k := c.String()
	shard = filepath.Join(s.dir, k[len(k)-2:])
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

func (s *fileStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	_, p := s.path(c)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return nil, err
	}
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return nil, err
	}
	if !got.Equals(c) {
		return nil, fmt.Errorf("block %s is corrupted on disk (content hashes to %s)", c, got)
	}
	return blocks.NewBlockWithCid(data, c)
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

func (s *fileStore) Put(ctx context.Context, b blocks.Block) error {
	shard, p := s.path(b.Cid())
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(shard, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(shard, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b.RawData())
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put block %s: %w", b.Cid(), err)
	}
	s.mu.Lock()
	s.dirty[shard] = true
	s.mu.Unlock()
	return nil
}

func (s *fileStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if err := s.Put(ctx, b); err != nil {
			return err
		}
	}
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

func (s *fileStore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid)
	go func() {
		defer close(ch)
		filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			c, err := cid.Decode(d.Name())
			if err != nil {
				return nil
			}
			select {
			case ch <- c:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return ch, nil
}

// Flush makes the renames of every block written so far durable.
func (s *fileStore) Flush() error {
	if s.noSync {
		return nil
	}
	s.mu.Lock()
	dirs := s.dirty
	s.dirty = map[string]bool{}
	s.mu.Unlock()
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
