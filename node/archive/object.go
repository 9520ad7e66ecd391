package archive

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/klauspost/compress/zstd"
	"github.com/multiformats/go-multihash"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/shuffle"
)

// An encrypted object is the age ciphertext of one payload, chunked into raw
// blocks of BlockSize bytes. An object of one block is rooted at that block;
// a larger one at a dag-pb node without data that links its blocks in order
// (names c0, c1, ...; each link's Tsize is the block's size).
//
// The payload of an instance is its original bytes, or, for the uncompressed
// transfer syntaxes, their zstd compression when that saves at least a tenth.
// Before compression the bytes are split into segments of shuffleSegment
// bytes and each segment is de-interleaved in pairs (even bytes, then odd
// bytes, then a last odd byte), which groups the high and low bytes of 16-bit
// pixels: zstd then runs about twice as fast and compresses CT about a third
// better. Instance.Compressed and Instance.Shuffled record what was done.

// BlockSize is the size of the ciphertext chunks.
const BlockSize = 1 << 20

// shuffleSegment is the unit of the pair de-interleaving (part of the stored
// format: changing it makes existing objects unreadable).
const shuffleSegment = 1 << 20

// uncompressed lists the transfer syntaxes whose instances are compressed.
var uncompressed = map[string]bool{
	"1.2.840.10008.1.2": true, "1.2.840.10008.1.2.1": true, "1.2.840.10008.1.2.2": true,
}

// rawPrefix and nodeBuilder are the only CID profiles the archive writes.
var (
	rawPrefix   = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}
	nodeBuilder = cid.V1Builder{Codec: cid.DagProtobuf, MhType: multihash.SHA2_256}
)

var (
	zenc *zstd.Encoder
	zdec = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
		if err != nil {
			panic(err)
		}
		return d
	}}
	// segs holds the two shuffle segments of an instanceReader: allocating
	// (and zeroing) 2 MiB per instance read cost more than decrypting it.
	segs = sync.Pool{New: func() any { return new([2][shuffleSegment]byte) }}
)

func init() {
	var err error
	zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(max(4, runtime.GOMAXPROCS(0))), zstd.WithEncoderCRC(false))
	if err != nil {
		panic(err)
	}
}

// bufPool recycles the working buffers of Add up to maxPooled bytes.
var bufPool sync.Pool

const maxPooled = 8 << 20

func getBuf(n int) []byte {
	if p, ok := bufPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, max(n, 1<<20))
}

func putBuf(b []byte) {
	if cap(b) <= maxPooled {
		bufPool.Put(&b)
	}
}

// shuffleSegments de-interleaves src into dst (of the same length) segment
// by segment; shuffle.Join reverses it for one segment.
func shuffleSegments(dst, src []byte) {
	for off := 0; off < len(src); off += shuffleSegment {
		end := min(off+shuffleSegment, len(src))
		shuffle.Split(dst[off:end], src[off:end])
	}
}

// encode returns the payload stored for an instance and how it was made.
// The payload is a pooled buffer the caller releases with putBuf, or data
// itself.
func encode(data []byte, transferSyntax string) (payload []byte, compressed, shuffled bool) {
	if !uncompressed[transferSyntax] || len(data) < 64 {
		return data, false, false
	}
	sh := getBuf(len(data))[:len(data)]
	shuffleSegments(sh, data)
	z := zenc.EncodeAll(sh, getBuf(len(data)/2))
	putBuf(sh)
	if len(z) > len(data)-len(data)/10 {
		putBuf(z)
		return data, false, false
	}
	return z, true, true
}

// encrypt returns the age ciphertext of payload to key in a pooled buffer.
func encrypt(key *crypto.StudyKey, payload []byte) ([]byte, error) {
	return key.AppendEncrypted(getBuf(len(payload)+len(payload)/4096+1024), payload)
}

// putObject chunks ciphertext into blocks, handing each new file to batch.
// It returns the object's root and every block written, root included, for
// the caller to delete should the object not be committed.
func (a *Archive) putObject(ct []byte, batch *syncBatch) (root cid.Cid, written []cid.Cid, err error) {
	var node *merkledag.ProtoNode
	if len(ct) > BlockSize {
		node = merkledag.NodeWithData(nil)
		node.SetCidBuilder(nodeBuilder)
	}
	for i := 0; len(ct) > 0; i++ {
		n := min(len(ct), BlockSize)
		c, err := rawPrefix.Sum(ct[:n])
		if err != nil {
			return cid.Undef, written, err
		}
		if err := a.bs.put(c, ct[:n], batch); err != nil {
			return cid.Undef, written, err
		}
		written = append(written, c)
		if node == nil {
			return c, written, nil
		}
		node.AddRawLink(fmt.Sprintf("c%d", i), &ipld.Link{Cid: c, Size: uint64(n)})
		ct = ct[n:]
	}
	if node == nil {
		return cid.Undef, nil, errors.New("empty object")
	}
	if err := a.bs.put(node.Cid(), node.RawData(), batch); err != nil {
		return cid.Undef, written, err
	}
	return node.Cid(), append(written, node.Cid()), nil
}

// getter reads blocks: the archive's store, or another (a study being pulled).
type getter interface {
	Get(context.Context, cid.Cid) (blocks.Block, error)
}

// unhashedChunks reads an object's ciphertext chunks without recomputing
// their CIDs; nodes are still read, and checked, by Get. It is for reads
// that consume a whole instance to check it: age authenticates every
// ciphertext chunk and the instance's SHA-256 covers the rest, so a changed
// byte is still an error, only a later one than with Get.
type unhashedChunks struct{ *fileStore }

func (u unhashedChunks) readChunk(c cid.Cid, buf []byte) ([]byte, error) {
	return u.readChunkFile(c, buf)
}

// chunkSource is a getter whose ciphertext chunks chunkReader reads with
// readChunk instead of Get: unhashedChunks, receivedChunks.
type chunkSource interface {
	getter
	readChunk(c cid.Cid, buf []byte) ([]byte, error)
}

// chunks returns the ciphertext blocks of the object rooted at root, in order.
func chunks(ctx context.Context, g getter, root cid.Cid) ([]cid.Cid, error) {
	switch root.Type() {
	case cid.Raw:
		return []cid.Cid{root}, nil
	case cid.DagProtobuf:
	default:
		return nil, fmt.Errorf("object %s: unexpected codec %x", root, root.Type())
	}
	blk, err := g.Get(ctx, root)
	if err != nil {
		return nil, err
	}
	node, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return nil, fmt.Errorf("object node %s: %w", root, err)
	}
	out := make([]cid.Cid, 0, len(node.Links()))
	for _, l := range node.Links() {
		if l.Cid.Type() != cid.Raw {
			return nil, fmt.Errorf("object node %s links a non-raw block", root)
		}
		out = append(out, l.Cid)
	}
	return out, nil
}

// chunkReader reads the concatenated blocks of an object, one at a time.
type chunkReader struct {
	ctx  context.Context
	g    getter
	cids []cid.Cid
	cur  []byte
	buf  []byte // reused for each chunk read from a fileStore
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if len(r.cids) == 0 {
			return 0, io.EOF
		}
		if src, ok := r.g.(chunkSource); ok {
			var err error
			if r.buf, err = src.readChunk(r.cids[0], r.buf); err != nil {
				return 0, err
			}
			r.cids, r.cur = r.cids[1:], r.buf
			continue
		}
		blk, err := r.g.Get(r.ctx, r.cids[0])
		if err != nil {
			return 0, err
		}
		r.cids, r.cur = r.cids[1:], blk.RawData()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// openObject returns a reader of the decrypted payload of an object.
func openObject(ctx context.Context, g getter, key *crypto.StudyKey, root cid.Cid) (io.Reader, error) {
	cids, err := chunks(ctx, g, root)
	if err != nil {
		return nil, err
	}
	return key.Decrypt(&chunkReader{ctx: ctx, g: g, cids: cids})
}

// readObject returns the whole decrypted payload of a small object.
func readObject(ctx context.Context, g getter, key *crypto.StudyKey, root cid.Cid, limit int64) ([]byte, error) {
	r, err := openObject(ctx, g, key, root)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("object %s larger than %d bytes", root, limit)
	}
	return b, nil
}

// instanceReader streams an instance's original bytes and checks their size
// and SHA-256 at the end: a mismatch is returned instead of io.EOF.
type instanceReader struct {
	src  io.Reader // payload, decompressed
	dec  *zstd.Decoder
	in   Instance
	h    hash.Hash
	n    int64
	segs *[2][shuffleSegment]byte // from the pool, returned by Close
	seg  []byte                   // shuffled segment as read
	buf  []byte                   // seg unshuffled
	out  []byte                   // the part of buf not yet returned
	done bool
	err  error
}

func openInstance(ctx context.Context, g getter, key *crypto.StudyKey, in Instance) (*instanceReader, error) {
	payload, err := openObject(ctx, g, key, in.Root)
	if err != nil {
		return nil, err
	}
	r := &instanceReader{src: payload, in: in, h: sha256.New()}
	if in.Compressed {
		d := zdec.Get().(*zstd.Decoder)
		if err := d.Reset(payload); err != nil {
			zdec.Put(d)
			return nil, err
		}
		r.dec, r.src = d, d
	}
	if in.Shuffled {
		r.segs = segs.Get().(*[2][shuffleSegment]byte)
		r.seg, r.buf = r.segs[0][:], r.segs[1][:]
	}
	return r, nil
}

func (r *instanceReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	var n int
	var err error
	if r.seg == nil {
		n, err = r.src.Read(p)
	} else {
		if len(r.out) == 0 && !r.done {
			m, rerr := io.ReadFull(r.src, r.seg)
			if m > 0 {
				shuffle.Join(r.buf[:m], r.seg[:m])
				r.out = r.buf[:m]
			}
			switch {
			case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
				r.done = true
			case rerr != nil:
				r.err = rerr
				return 0, rerr
			}
		}
		n = copy(p, r.out)
		r.out = r.out[n:]
		if len(r.out) == 0 && r.done {
			err = io.EOF
		}
	}
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		var sum [32]byte
		r.h.Sum(sum[:0])
		if r.n != r.in.Size || sum != r.in.SHA256 {
			err = fmt.Errorf("instance %s: %w: content does not match its recorded size and SHA-256", r.in.SOPInstanceUID, ErrCorrupt)
		}
	}
	if err != nil {
		r.err = err
	}
	if n > 0 && err != nil && err != io.EOF {
		return n, nil
	}
	return n, err
}

// Close returns the decoder to its pool.
func (r *instanceReader) Close() error {
	if r.dec != nil {
		r.dec.Reset(nil)
		zdec.Put(r.dec)
		r.dec = nil
	}
	if r.segs != nil {
		r.seg, r.buf, r.out = nil, nil, nil
		segs.Put(r.segs)
		r.segs = nil
	}
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return nil
}
