package blocks

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blockformat "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ID is the block exchange protocol.
const ID protocol.ID = "/dicomesh/blocks/1.0.0"

// Limits.
const (
	// MaxBlockBytes bounds one block: the archive writes raw blocks of
	// 1 MiB and small dag-pb nodes.
	MaxBlockBytes = 2 << 20
	// MaxWant bounds the CIDs of one request.
	MaxWant = 256
	// maxCIDBytes bounds one encoded CID.
	maxCIDBytes = 128
)

// ErrMissing reports a block that no source could provide.
var ErrMissing = errors.New("blocks: no source has the block")

// ErrCorrupt reports a block whose bytes do not hash to its CID.
var ErrCorrupt = errors.New("blocks: block does not match its CID")

// Server serves the blocks of a local blockstore to members.
type Server struct {
	h      host.Host
	bs     blockstore.Blockstore
	member func(peer.ID) bool
	served atomic.Int64
}

// Serve registers the block protocol on h: members (member reports who)
// may fetch any block bs holds. Blocks are ciphertext or opaque nodes, so
// serving them discloses nothing to a member without the study key.
func Serve(h host.Host, bs blockstore.Blockstore, member func(peer.ID) bool) *Server {
	s := &Server{h: h, bs: bs, member: member}
	h.SetStreamHandler(ID, s.handle)
	return s
}

// Close unregisters the protocol.
func (s *Server) Close() { s.h.RemoveStreamHandler(ID) }

// Served returns the number of blocks sent so far.
func (s *Server) Served() int64 { return s.served.Load() }

// A request is a uvarint count of CIDs, each a uvarint length and the CID's
// bytes. The answer is, for each CID in order, one status byte (1: here it
// is, 0: not here) and, for 1, a uvarint length and the block's bytes. A
// stream carries any number of requests until the requester closes it.
func (s *Server) handle(st network.Stream) {
	defer st.Close()
	if !s.member(st.Conn().RemotePeer()) {
		st.Reset()
		return
	}
	if err := st.Scope().ReserveMemory(MaxBlockBytes, network.ReservationPriorityAlways); err != nil {
		st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(MaxBlockBytes)
	r := bufio.NewReader(st)
	w := bufio.NewWriterSize(st, 256<<10)
	ctx := context.Background()
	var buf []byte // reused for each block when bs is a Reader
	for {
		st.SetDeadline(time.Now().Add(idleTimeout))
		want, err := readWant(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				st.Reset()
			}
			return
		}
		for _, c := range want {
			data, err := s.read(ctx, c, &buf)
			if err != nil {
				w.WriteByte(0)
				continue
			}
			w.WriteByte(1)
			var n [binary.MaxVarintLen64]byte
			w.Write(n[:binary.PutUvarint(n[:], uint64(len(data)))])
			if _, err := w.Write(data); err != nil {
				st.Reset()
				return
			}
			s.served.Add(1)
		}
		if err := w.Flush(); err != nil {
			st.Reset()
			return
		}
	}
}

// Reader is a blockstore that reads a block's stored bytes into a buffer
// of the caller's, without hashing them: the server uses it when its
// blockstore has it, since every receiver verifies every block against its
// CID and drops a source that sends a wrong one.
type Reader interface {
	ReadBlock(ctx context.Context, c cid.Cid, buf []byte) ([]byte, error)
}

// read returns a block's bytes, valid until the next read on buf.
func (s *Server) read(ctx context.Context, c cid.Cid, buf *[]byte) ([]byte, error) {
	if rd, ok := s.bs.(Reader); ok {
		data, err := rd.ReadBlock(ctx, c, *buf)
		if err == nil && len(data) > MaxBlockBytes {
			return nil, fmt.Errorf("blocks: block %s of %d bytes", c, len(data))
		}
		if err == nil {
			*buf = data
		}
		return data, err
	}
	blk, err := s.bs.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	return blk.RawData(), nil
}

// idleTimeout is how long a stream may sit without a request or without
// progress on an answer.
const idleTimeout = 30 * time.Second

func readWant(r *bufio.Reader) ([]cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n == 0 || n > MaxWant {
		return nil, fmt.Errorf("blocks: request for %d blocks (1 to %d)", n, MaxWant)
	}
	want := make([]cid.Cid, 0, n)
	buf := make([]byte, maxCIDBytes)
	for range n {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if l == 0 || l > maxCIDBytes {
			return nil, fmt.Errorf("blocks: CID of %d bytes", l)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			return nil, err
		}
		c, err := cid.Cast(buf[:l])
		if err != nil {
			return nil, fmt.Errorf("blocks: %w", err)
		}
		want = append(want, c)
	}
	return want, nil
}

func appendWant(b []byte, want []cid.Cid) []byte {
	b = binary.AppendUvarint(b, uint64(len(want)))
	for _, c := range want {
		cb := c.Bytes()
		b = binary.AppendUvarint(b, uint64(len(cb)))
		b = append(b, cb...)
	}
	return b
}

// Progress reports a fetch.
type Progress struct {
	Blocks  int64 `json:"blocks"`  // blocks now present locally (fetched or already there)
	Bytes   int64 `json:"bytes"`   // their bytes
	Fetched int64 `json:"fetched"` // blocks fetched by this call
	Known   int64 `json:"known"`   // blocks known so far (grows as nodes are read)
}

// Fetcher fetches DAGs into a local blockstore.
type Fetcher struct {
	H host.Host
	// Local receives every verified block; blocks already in it are not
	// fetched again, which makes an interrupted fetch resumable.
	Local blockstore.Blockstore
	// Batch is how many CIDs one request asks for (default 32).
	Batch int
	// Streams is how many streams are open to each source at once
	// (default 2), so that one source's sending overlaps with storing.
	Streams int
	// Progress, if set, is called as blocks arrive, from one goroutine at
	// a time.
	Progress func(Progress)
	// Shallow fetches the root block alone, not what it links to.
	Shallow bool
}

// Fetch fetches the DAG under root (dag-pb nodes and raw leaves) from
// sources, spreading requests over all of them. Every block is verified
// against its CID before it is stored; a source that sends a wrong block,
// fails or stalls is dropped and its requests go to the others. Fetch
// returns nil once every block of the DAG is in Local, or an error (wrapping
// ErrMissing when the remaining sources lack a block); what was verified
// stays in Local for the next attempt.
func (f *Fetcher) Fetch(ctx context.Context, root cid.Cid, sources []peer.ID) error {
	batch := f.Batch
	if batch <= 0 || batch > MaxWant {
		batch = 32
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ft := &fetch{f: f, ctx: ctx, cancel: cancel, seen: map[cid.Cid]bool{},
		wake: make(chan struct{}), finish: make(chan struct{})}
	ft.want(root)
	if err := ft.drainLocal(); err != nil {
		return err
	}
	if ft.pending.Load() == 0 {
		return nil
	}
	if len(sources) == 0 {
		return fmt.Errorf("fetch %s: %w", root, ErrMissing)
	}
	streams := f.Streams
	if streams <= 0 {
		streams = 2
	}
	var wg sync.WaitGroup
	ft.alive.Store(int64(len(sources) * streams))
	for _, p := range sources {
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := ft.source(p, batch)
				if ft.alive.Add(-1) == 0 && ft.pending.Load() > 0 {
					cancel(fmt.Errorf("fetch %s: the last source, %s, failed: %w (%w)", root, p, err, ErrMissing))
				}
			}()
		}
	}
	select {
	case <-ft.finish:
	case <-ctx.Done():
	}
	cancel(errFinished)
	wg.Wait()
	if ft.pending.Load() == 0 {
		return nil
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, errFinished) {
		return err
	}
	return fmt.Errorf("fetch %s: %w", root, ErrMissing)
}

var errFinished = errors.New("fetch finished")

// fetch is the state of one Fetch.
type fetch struct {
	f      *Fetcher
	ctx    context.Context
	cancel context.CancelCauseFunc

	pending atomic.Int64  // blocks wanted and not yet stored
	alive   atomic.Int64  // sources still working
	finish  chan struct{} // closed when pending reaches 0
	once    sync.Once

	mu    sync.Mutex
	seen  map[cid.Cid]bool
	local []cid.Cid     // wanted blocks found locally, to read for their links
	carry []cid.Cid     // wanted blocks to fetch, not yet asked for
	wake  chan struct{} // closed (and replaced) when carry grows
	prog  Progress
}

// signal wakes every source waiting for work; ft.mu is held.
func (ft *fetch) signal() {
	close(ft.wake)
	ft.wake = make(chan struct{})
}

// want records c as wanted, once.
func (ft *fetch) want(c cid.Cid) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.seen[c] {
		return
	}
	ft.seen[c] = true
	ft.prog.Known++
	ft.pending.Add(1)
	if has, _ := ft.f.Local.Has(ft.ctx, c); has {
		ft.local = append(ft.local, c)
		return
	}
	ft.carry = append(ft.carry, c)
	ft.signal()
}

// drainLocal reads the wanted blocks already present (for their links)
// until none is left.
func (ft *fetch) drainLocal() error {
	for {
		ft.mu.Lock()
		local := ft.local
		ft.local = nil
		ft.mu.Unlock()
		if len(local) == 0 {
			return nil
		}
		for _, c := range local {
			blk, err := ft.f.Local.Get(ft.ctx, c)
			if err != nil {
				return fmt.Errorf("fetch: local block %s: %w", c, err)
			}
			if err := ft.stored(blk, false); err != nil {
				return err
			}
		}
	}
}

// stored accounts for a block now in Local and wants its children.
func (ft *fetch) stored(blk blockformat.Block, fetched bool) error {
	c := blk.Cid()
	if c.Type() == cid.DagProtobuf && !ft.f.Shallow {
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			return fmt.Errorf("fetch: node %s: %w", c, err)
		}
		for _, l := range nd.Links() {
			ft.want(l.Cid)
		}
	}
	ft.mu.Lock()
	ft.prog.Blocks++
	ft.prog.Bytes += int64(len(blk.RawData()))
	if fetched {
		ft.prog.Fetched++
	}
	if ft.f.Progress != nil {
		ft.f.Progress(ft.prog)
	}
	ft.mu.Unlock()
	if ft.pending.Add(-1) == 0 {
		ft.once.Do(func() { close(ft.finish) })
	}
	return nil
}

// next returns the next batch to fetch, waiting for one.
func (ft *fetch) next(size int) ([]cid.Cid, bool) {
	for {
		if err := ft.drainLocal(); err != nil {
			ft.cancel(err)
			return nil, false
		}
		ft.mu.Lock()
		if len(ft.carry) > 0 {
			n := min(size, len(ft.carry))
			b := ft.carry[:n:n]
			ft.carry = ft.carry[n:]
			ft.mu.Unlock()
			return b, true
		}
		wake := ft.wake
		ft.mu.Unlock()
		select {
		case <-wake:
		case <-ft.finish:
			return nil, false
		case <-ft.ctx.Done():
			return nil, false
		}
	}
}

// giveBack returns CIDs a source did not deliver, for the others.
func (ft *fetch) giveBack(cs []cid.Cid) {
	if len(cs) == 0 {
		return
	}
	ft.mu.Lock()
	ft.carry = append(ft.carry, cs...)
	ft.signal()
	ft.mu.Unlock()
}

// source fetches batches from one peer until the fetch ends or the peer
// fails.
func (ft *fetch) source(p peer.ID, size int) error {
	st, err := ft.f.H.NewStream(ft.ctx, p, ID)
	if err != nil {
		return err
	}
	defer st.Close()
	r := bufio.NewReaderSize(st, 256<<10)
	buf := make([]byte, 0, 4096)
	for {
		want, ok := ft.next(size)
		if !ok {
			return nil
		}
		st.SetDeadline(time.Now().Add(idleTimeout))
		if _, err := st.Write(appendWant(buf[:0], want)); err != nil {
			ft.giveBack(want)
			st.Reset()
			return err
		}
		for i, c := range want {
			st.SetReadDeadline(time.Now().Add(idleTimeout))
			blk, err := readBlock(r, c)
			if err != nil {
				ft.giveBack(want[i:])
				st.Reset()
				return err
			}
			if blk == nil { // this source does not have it
				ft.giveBack(want[i+1:])
				ft.giveBack([]cid.Cid{c})
				return fmt.Errorf("%s lacks %s: %w", p, c, ErrMissing)
			}
			if err := ft.put(blk); err != nil {
				ft.cancel(fmt.Errorf("fetch: store %s: %w", c, err))
				return err
			}
			if err := ft.stored(blk, true); err != nil {
				ft.cancel(err)
				return err
			}
		}
	}
}

// VerifiedPutter is a Local that need not hash again what the fetcher has
// verified: PutVerified receives only blocks whose data hash to their CID.
type VerifiedPutter interface {
	PutVerified(context.Context, blockformat.Block) error
}

// put stores a verified block.
func (ft *fetch) put(blk blockformat.Block) error {
	if vp, ok := ft.f.Local.(VerifiedPutter); ok {
		return vp.PutVerified(ft.ctx, blk)
	}
	return ft.f.Local.Put(ft.ctx, blk)
}

// readBlock reads one answer for c: nil when the source lacks it, an error
// wrapping ErrCorrupt when the bytes do not hash to c.
func readBlock(r *bufio.Reader, c cid.Cid) (blockformat.Block, error) {
	status, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	switch status {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("blocks: bad status %d", status)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > MaxBlockBytes {
		return nil, fmt.Errorf("blocks: block of %d bytes (limit %d)", n, MaxBlockBytes)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	got, err := c.Prefix().Sum(data)
	if err != nil || !got.Equals(c) {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, c)
	}
	return blockformat.NewBlockWithCid(data, c)
}
