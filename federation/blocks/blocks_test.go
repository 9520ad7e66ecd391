package blocks

import (
	"context"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blockformat "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

func newStore() blockstore.Blockstore {
	return blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore()))
}

func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// dag builds a two-level DAG like a study's: a root node linking nodes that
// each link raw leaves. It returns the root and every block, root first.
func dag(t testing.TB, nodes, leaves, size int) (cid.Cid, []blockformat.Block) {
	t.Helper()
	raw := cid.V1Builder{Codec: cid.Raw, MhType: multihash.SHA2_256}
	pb := cid.V1Builder{Codec: cid.DagProtobuf, MhType: multihash.SHA2_256}
	root := merkledag.NodeWithData(nil)
	root.SetCidBuilder(pb)
	var all []blockformat.Block
	for range nodes {
		nd := merkledag.NodeWithData(nil)
		nd.SetCidBuilder(pb)
		for range leaves {
			data := make([]byte, size)
			rand.Read(data)
			c, _ := raw.Sum(data)
			b, _ := blockformat.NewBlockWithCid(data, c)
			all = append(all, b)
			nd.AddRawLink("", &ipld.Link{Cid: c, Size: uint64(size)})
		}
		all = append(all, nd)
		root.AddNodeLink("", nd)
	}
	return root.Cid(), append([]blockformat.Block{root}, all...)
}

func put(t testing.TB, bs blockstore.Blockstore, blks []blockformat.Block) {
	t.Helper()
	for _, b := range blks {
		if err := bs.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

func everyone(peer.ID) bool { return true }

// source starts a host serving bs and connects the fetcher's host to it.
func source(t *testing.T, to host.Host, bs blockstore.Blockstore, member func(peer.ID) bool) (host.Host, *Server) {
	t.Helper()
	h := newHost(t)
	s := Serve(h, bs, member)
	if err := to.Connect(context.Background(), peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return h, s
}

func checkAll(t *testing.T, bs blockstore.Blockstore, blks []blockformat.Block) {
	t.Helper()
	for _, b := range blks {
		got, err := bs.Get(context.Background(), b.Cid())
		if err != nil {
			t.Fatalf("block %s missing: %v", b.Cid(), err)
		}
		if string(got.RawData()) != string(b.RawData()) {
			t.Fatalf("block %s differs", b.Cid())
		}
	}
}

func TestFetchFromTwoSources(t *testing.T) {
	root, blks := dag(t, 4, 50, 32<<10)
	me := newHost(t)
	full, half := newStore(), newStore()
	put(t, full, blks)
	put(t, half, blks[:len(blks)/2]) // a holder that has only part
	ha, sa := source(t, me, full, everyone)
	hb, sb := source(t, me, half, everyone)
	local := newStore()
	var last Progress
	f := &Fetcher{H: me, Local: local, Batch: 8, Progress: func(p Progress) { last = p }}
	if err := f.Fetch(context.Background(), root, []peer.ID{hb.ID(), ha.ID()}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, local, blks)
	if last.Blocks != int64(len(blks)) || last.Fetched != int64(len(blks)) {
		t.Fatalf("progress %+v, want %d blocks", last, len(blks))
	}
	if got := sa.Served() + sb.Served(); got != int64(len(blks)) {
		t.Fatalf("%d blocks served for %d fetched", got, len(blks))
	}
}

// corruptStore serves wrong bytes for every block.
type corruptStore struct{ blockstore.Blockstore }

func (c corruptStore) Get(ctx context.Context, k cid.Cid) (blockformat.Block, error) {
	b, err := c.Blockstore.Get(ctx, k)
	if err != nil {
		return nil, err
	}
	data := append([]byte(nil), b.RawData()...)
	data[0] ^= 0xff
	return blockformat.NewBlockWithCid(data, k)
}

// honestAndCorrupt makes a DAG and two sources of it for the host me: one
// serves it as it is, the other with every block damaged.
func honestAndCorrupt(t *testing.T) (root cid.Cid, blks []blockformat.Block, me, hgood, hbad host.Host) {
	root, blks = dag(t, 2, 20, 16<<10)
	me = newHost(t)
	good, bad := newStore(), newStore()
	put(t, good, blks)
	put(t, bad, blks)
	hbad, _ = source(t, me, corruptStore{bad}, everyone)
	hgood, _ = source(t, me, good, everyone)
	return root, blks, me, hgood, hbad
}

// TestCorruptSourceDropped: blocks that do not match their CID are never
// stored; the fetch completes from an honest source.
func TestCorruptSourceDropped(t *testing.T) {
	root, blks, me, hgood, hbad := honestAndCorrupt(t)
	local := newStore()
	f := &Fetcher{H: me, Local: local, Batch: 4}
	if err := f.Fetch(context.Background(), root, []peer.ID{hbad.ID(), hgood.ID()}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, local, blks)

	// With only the corrupt source, nothing is accepted.
	local2 := newStore()
	f2 := &Fetcher{H: me, Local: local2}
	err := f2.Fetch(context.Background(), root, []peer.ID{hbad.ID()})
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrMissing) {
		t.Fatalf("fetch from a corrupt source: %v", err)
	}
	keys, _ := local2.AllKeysChan(context.Background())
	for k := range keys {
		t.Fatalf("block %s stored from a corrupt source", k)
	}
}

// failingStore fails every Get after the first n.
type failingStore struct {
	blockstore.Blockstore
	n *atomic.Int64
}

func (s failingStore) Get(ctx context.Context, k cid.Cid) (blockformat.Block, error) {
	if s.n.Add(-1) < 0 {
		return nil, errors.New("gone")
	}
	return s.Blockstore.Get(ctx, k)
}

// TestResume: a fetch cut short by its only source resumes from another
// without fetching again any block it verified.
func TestResume(t *testing.T) {
	root, blks := dag(t, 3, 40, 16<<10)
	me := newHost(t)
	dying, other := newStore(), newStore()
	put(t, dying, blks)
	put(t, other, blks)
	var n atomic.Int64
	n.Store(int64(len(blks) / 3))
	hd, _ := source(t, me, failingStore{dying, &n}, everyone)
	local := newStore()
	var fetched int64
	f := &Fetcher{H: me, Local: local, Batch: 8, Progress: func(p Progress) { fetched = p.Fetched }}
	if err := f.Fetch(context.Background(), root, []peer.ID{hd.ID()}); !errors.Is(err, ErrMissing) {
		t.Fatalf("first fetch: %v", err)
	}
	first := fetched
	if first == 0 || first >= int64(len(blks)) {
		t.Fatalf("first fetch stored %d of %d blocks", first, len(blks))
	}
	ho, so := source(t, me, other, everyone)
	if err := f.Fetch(context.Background(), root, []peer.ID{ho.ID()}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, local, blks)
	if first+fetched != int64(len(blks)) || so.Served() != fetched {
		t.Fatalf("fetched %d then %d (served %d) of %d blocks: a verified block was fetched twice", first, fetched, so.Served(), len(blks))
	}
	// Everything is local now: nothing is fetched at all.
	if err := f.Fetch(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
}

// TestNonMemberGetsNothing: a source refuses peers that are not members.
func TestNonMemberGetsNothing(t *testing.T) {
	root, blks := dag(t, 1, 4, 1024)
	me := newHost(t)
	bs := newStore()
	put(t, bs, blks)
	h, s := source(t, me, bs, func(peer.ID) bool { return false })
	err := (&Fetcher{H: me, Local: newStore()}).Fetch(context.Background(), root, []peer.ID{h.ID()})
	if err == nil || s.Served() != 0 {
		t.Fatalf("non-member fetch: %v, %d served", err, s.Served())
	}
}

// TestGarbageRequest: a malformed request resets its stream and the source
// goes on serving.
func TestGarbageRequest(t *testing.T) {
	root, blks := dag(t, 1, 4, 1024)
	me := newHost(t)
	bs := newStore()
	put(t, bs, blks)
	h, _ := source(t, me, bs, everyone)
	for _, junk := range [][]byte{{0}, {0xff, 0xff, 0xff, 0xff, 0x0f}, {1, 200, 1}, {1, 3, 1, 2, 3}} {
		st, err := me.NewStream(context.Background(), h.ID(), ID)
		if err != nil {
			t.Fatal(err)
		}
		st.Write(junk)
		st.CloseWrite()
		var b [1]byte
		if n, _ := st.Read(b[:]); n != 0 {
			t.Fatalf("answer to garbage %x", junk)
		}
		st.Close()
	}
	if err := (&Fetcher{H: me, Local: newStore()}).Fetch(context.Background(), root, []peer.ID{h.ID()}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFetch moves a DAG of 128 blocks of 1 MiB between two hosts over
// loopback TCP (Noise, yamux), from memory to memory: the protocol's
// ceiling here, without disks.
func BenchmarkFetch(b *testing.B) {
	root, blks := dag(b, 4, 32, 1<<20)
	me := newHost(b)
	src := newStore()
	put(b, src, blks)
	h := newHost(b)
	Serve(h, src, everyone)
	if err := me.Connect(context.Background(), peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(128 << 20)
	b.ResetTimer()
	for range b.N {
		f := &Fetcher{H: me, Local: newStore()}
		if err := f.Fetch(context.Background(), root, []peer.ID{h.ID()}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestShallowFetch: a shallow fetch brings the root block alone.
func TestShallowFetch(t *testing.T) {
	root, blks := dag(t, 4, 10, 4<<10)
	me := newHost(t)
	full := newStore()
	put(t, full, blks)
	h, s := source(t, me, full, everyone)
	local := newStore()
	f := &Fetcher{H: me, Local: local, Shallow: true}
	if err := f.Fetch(context.Background(), root, []peer.ID{h.ID()}); err != nil {
		t.Fatal(err)
	}
	if has, _ := local.Has(context.Background(), root); !has || s.Served() != 1 {
		t.Fatalf("root here %v, %d blocks served, want the root alone", has, s.Served())
	}
}

// verifiedOnly is a Local that takes blocks through PutVerified alone.
type verifiedOnly struct {
	blockstore.Blockstore
	n *atomic.Int64
}

func (v verifiedOnly) Put(context.Context, blockformat.Block) error {
	return errors.New("Put called on a VerifiedPutter")
}

func (v verifiedOnly) PutVerified(ctx context.Context, b blockformat.Block) error {
	v.n.Add(1)
	return v.Blockstore.Put(ctx, b)
}

// TestVerifiedPutter: a Local that skips hashing gets every block through
// PutVerified, and still nothing from a corrupt source.
func TestVerifiedPutter(t *testing.T) {
	root, blks, me, hgood, hbad := honestAndCorrupt(t)

	var n atomic.Int64
	local := verifiedOnly{newStore(), &n}
	if err := (&Fetcher{H: me, Local: local}).Fetch(context.Background(), root, []peer.ID{hbad.ID()}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("fetch from a corrupt source: %v", err)
	}
	if n.Load() != 0 {
		t.Fatalf("%d blocks from a corrupt source reached PutVerified", n.Load())
	}
	if err := (&Fetcher{H: me, Local: local}).Fetch(context.Background(), root, []peer.ID{hbad.ID(), hgood.ID()}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, local, blks)
	if n.Load() != int64(len(blks)) {
		t.Errorf("PutVerified took %d blocks, want %d", n.Load(), len(blks))
	}
}

// readerStore serves blocks through ReadBlock, into the server's buffer.
type readerStore struct {
	blockstore.Blockstore
	reads *atomic.Int64
}

func (r readerStore) ReadBlock(ctx context.Context, c cid.Cid, buf []byte) ([]byte, error) {
	b, err := r.Blockstore.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	r.reads.Add(1)
	return append(buf[:0], b.RawData()...), nil
}

// TestServeThroughReader: a server whose store is a Reader reuses one
// buffer per stream for every block, and the fetch gets every block intact.
func TestServeThroughReader(t *testing.T) {
	root, blks := dag(t, 3, 30, 8<<10)
	me := newHost(t)
	full := newStore()
	put(t, full, blks)
	var reads atomic.Int64
	h, s := source(t, me, readerStore{full, &reads}, everyone)
	local := newStore()
	if err := (&Fetcher{H: me, Local: local, Batch: 8}).Fetch(context.Background(), root, []peer.ID{h.ID()}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, local, blks)
	if reads.Load() != int64(len(blks)) || s.Served() != int64(len(blks)) {
		t.Errorf("%d blocks read through ReadBlock, %d served; want %d", reads.Load(), s.Served(), len(blks))
	}
}
