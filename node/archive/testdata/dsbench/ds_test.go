// Package dsbench compares block stores for the archive: the archive's own
// file-per-block store and go-ds-leveldb under boxo's blockstore, with 1 MiB
// blocks, durable writes. It is a separate module so that the main module
// does not depend on what it measures. go-ds-flatfs v0.5.1 (the only version
// the module proxy offers) does not build against go-datastore v0.9.2, which
// boxo v0.43.0 requires (query.ResultBuilder is gone); badger is left out
// for preallocating gigabytes.
//
//	cd node/archive/testdata/dsbench && go test -bench . -benchtime 3x
package dsbench

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	leveldb "github.com/ipfs/go-ds-leveldb"
	"github.com/multiformats/go-multihash"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/archive"
)

const nBlocks, blockSize, workers = 128, 1 << 20, 4

func makeBlocks(b *testing.B) []blocks.Block {
	pre := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}
	out := make([]blocks.Block, nBlocks)
	for i := range out {
		data := make([]byte, blockSize)
		rand.Read(data)
		c, _ := pre.Sum(data)
		out[i], _ = blocks.NewBlockWithCid(data, c)
	}
	return out
}

type store struct {
	name string
	open func(b *testing.B) blockstore.Blockstore
}

func stores() []store {
	return []store{
		{"archive", func(b *testing.B) blockstore.Blockstore {
			id, _ := crypto.GenerateIdentity(rand.Reader)
			a, err := archive.Open(archive.Config{Dir: b.TempDir(), Owner: id})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			return a.Blockstore()
		}},
		{"leveldb", func(b *testing.B) blockstore.Blockstore {
			ds, err := leveldb.NewDatastore(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ds.Close() })
			return blockstore.NewBlockstore(ds)
		}},
	}
}

// BenchmarkPut puts the blocks from 4 goroutines, one Put (durable) each.
func BenchmarkPut(b *testing.B) {
	for _, s := range stores() {
		b.Run(s.name, func(b *testing.B) {
			blks := makeBlocks(b)
			b.SetBytes(nBlocks * blockSize)
			for range b.N {
				b.StopTimer()
				bs := s.open(b)
				b.StartTimer()
				var wg sync.WaitGroup
				next := make(chan blocks.Block)
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for blk := range next {
							if err := bs.Put(context.Background(), blk); err != nil {
								b.Error(err)
							}
						}
					}()
				}
				for _, blk := range blks {
					next <- blk
				}
				close(next)
				wg.Wait()
			}
		})
	}
}

// BenchmarkPutMany puts the blocks in one durable batch.
func BenchmarkPutMany(b *testing.B) {
	for _, s := range stores() {
		b.Run(s.name, func(b *testing.B) {
			blks := makeBlocks(b)
			b.SetBytes(nBlocks * blockSize)
			for range b.N {
				b.StopTimer()
				bs := s.open(b)
				b.StartTimer()
				if err := bs.PutMany(context.Background(), blks); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGet reads every block back (from the page cache), verified.
func BenchmarkGet(b *testing.B) {
	for _, s := range stores() {
		b.Run(s.name, func(b *testing.B) {
			blks := makeBlocks(b)
			bs := s.open(b)
			if err := bs.PutMany(context.Background(), blks); err != nil {
				b.Fatal(err)
			}
			if v, ok := bs.(interface{ HashOnRead(bool) }); ok {
				v.HashOnRead(true)
			}
			b.SetBytes(nBlocks * blockSize)
			b.ResetTimer()
			for range b.N {
				for _, blk := range blks {
					if _, err := bs.Get(context.Background(), blk.Cid()); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
