package archive

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/klauspost/compress/zstd"
	"github.com/multiformats/go-multihash"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dicomesh/dicomesh/crypto"
)

// ErrBusy is returned by Begin when the study already has an open Tx.
var ErrBusy = errors.New("archive: study is being written")

// BlockSize is the size of the ciphertext chunks.
const BlockSize = 1 << 20

var (
	bucketStudies = []byte("studies")
	bucketPending = []byte("pending")
)

// uncompressed transfer syntaxes, where zstd pays off.
var uncompressed = map[string]bool{
	"1.2.840.10008.1.2": true, "1.2.840.10008.1.2.1": true, "1.2.840.10008.1.2.2": true,
}

// rawPrefix and nodePrefix are the only CID profiles the archive writes.
var (
	rawPrefix   = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}
	nodeBuilder = cid.V1Builder{Codec: cid.DagProtobuf, MhType: multihash.SHA2_256}
)

// record is what the index keeps for a study, sealed at rest.
type record struct {
	Study     Study
	SealedKey []byte // study key sealed to the owner's recipient
}

// Archive is a facility's study store. It is safe for concurrent use.
type Archive struct {
	cfg  Config
	bs   *fileStore
	db   *bolt.DB
	mac  [32]byte
	seal cipherAEAD
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	log  *slog.Logger

	mu      sync.RWMutex
	studies map[string]*record
	busy    map[string]bool
}

type cipherAEAD interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	NonceSize() int
}

// Open opens or creates the archive in cfg.Dir. Blocks left behind by a
// write that never committed are swept.
func Open(cfg Config) (*Archive, error) {
	if cfg.Dir == "" || cfg.Owner == nil {
		return nil, errors.New("archive: Dir and Owner are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bs, err := newFileStore(filepath.Join(cfg.Dir, "blocks"), cfg.NoSync)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	db, err := bolt.Open(filepath.Join(cfg.Dir, "index.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open archive index: %w", err)
	}
	sealKey := cfg.Owner.DeriveKey("archive index seal")
	aead, err := chacha20poly1305.NewX(sealKey[:])
	if err != nil {
		db.Close()
		return nil, err
	}
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zdec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	a := &Archive{
		cfg: cfg, bs: bs, db: db, mac: cfg.Owner.DeriveKey("archive index key"), seal: aead,
		zenc: zenc, zdec: zdec, log: log, studies: map[string]*record{}, busy: map[string]bool{},
	}
	pending := false
	err = db.Update(func(tx *bolt.Tx) error {
		sb, err := tx.CreateBucketIfNotExists(bucketStudies)
		if err != nil {
			return err
		}
		pb, err := tx.CreateBucketIfNotExists(bucketPending)
		if err != nil {
			return err
		}
		pending = pb.Stats().KeyN > 0
		return sb.ForEach(func(k, v []byte) error {
			var rec record
			if err := a.unseal(k, v, &rec); err != nil {
				return fmt.Errorf("index entry: %w", err)
			}
			a.studies[rec.Study.UID] = &rec
			return nil
		})
	})
	if err == nil && pending {
		err = a.sweep(context.Background())
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open archive %s: %w", cfg.Dir, err)
	}
	return a, nil
}

// Close closes the index.
func (a *Archive) Close() error {
	a.zdec.Close()
	return a.db.Close()
}

// Blockstore returns the block store holding the studies' ciphertext.
func (a *Archive) Blockstore() blockstore.Blockstore { return a.bs }

func (a *Archive) indexKey(uid string) []byte {
	m := hmac.New(sha256.New, a.mac[:])
	m.Write([]byte(uid))
	return m.Sum(nil)
}

func (a *Archive) sealValue(key []byte, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.seal.NonceSize())
	rand.Read(nonce)
	return a.seal.Seal(nonce, nonce, plain, key), nil
}

func (a *Archive) unseal(key, v []byte, out any) error {
	n := a.seal.NonceSize()
	if len(v) < n {
		return errors.New("sealed value too short")
	}
	plain, err := a.seal.Open(nil, v[:n], v[n:], key)
	if err != nil {
		return errors.New("sealed value does not authenticate (tampered, or another facility's key)")
	}
	return json.Unmarshal(plain, out)
}

// Study returns the latest version of a study.
func (a *Archive) Study(uid string) (Study, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	rec, ok := a.studies[uid]
	if !ok {
		return Study{}, fmt.Errorf("study %s: %w", uid, ErrNotFound)
	}
	return rec.Study, nil
}

// HasInstance reports whether the study holds the instance.
func (a *Archive) HasInstance(studyUID, sopUID string) bool {
	_, _, err := a.instance(studyUID, sopUID)
	return err == nil
}

func (a *Archive) instance(studyUID, sopUID string) (*record, Instance, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	rec, ok := a.studies[studyUID]
	if !ok {
		return nil, Instance{}, fmt.Errorf("study %s: %w", studyUID, ErrNotFound)
	}
	for _, se := range rec.Study.Series {
		for _, in := range se.Instances {
			if in.SOPInstanceUID == sopUID {
				return rec, in, nil
			}
		}
	}
	return nil, Instance{}, fmt.Errorf("instance %s: %w", sopUID, ErrNotFound)
}

// Studies returns the studies matching q, newest study date first.
func (a *Archive) Studies(q Query) ([]Study, error) {
	a.mu.RLock()
	var out []Study
	for _, rec := range a.studies {
		if q.matches(&rec.Study) {
			out = append(out, rec.Study)
		}
	}
	a.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].StudyDate != out[j].StudyDate {
			return out[i].StudyDate > out[j].StudyDate
		}
		return out[i].UID < out[j].UID
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func (q Query) matches(s *Study) bool {
	switch {
	case q.PatientID != "" && q.PatientID != s.PatientID,
		q.Issuer != "" && q.Issuer != s.Issuer,
		q.Accession != "" && q.Accession != s.Accession,
		q.PatientName != "" && !strings.HasPrefix(strings.ToUpper(s.PatientName), strings.ToUpper(q.PatientName)),
		q.Modality != "" && !slices.Contains(s.Modalities, q.Modality),
		q.DateFrom != "" && s.StudyDate < q.DateFrom,
		q.DateTo != "" && s.StudyDate > q.DateTo:
		return false
	}
	return true
}

// StudyKey returns the key a study's blocks are encrypted to.
func (a *Archive) StudyKey(uid string) (*crypto.StudyKey, error) {
	a.mu.RLock()
	rec, ok := a.studies[uid]
	a.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("study %s: %w", uid, ErrNotFound)
	}
	return crypto.OpenStudyKey(rec.SealedKey, a.cfg.Owner.AgeIdentity())
}

// ReadInstance returns the original bytes of an instance, decrypted and
// verified against the SHA-256 recorded at ingest.
func (a *Archive) ReadInstance(ctx context.Context, studyUID, sopUID string) (io.ReadCloser, error) {
	rec, in, err := a.instance(studyUID, sopUID)
	if err != nil {
		return nil, err
	}
	key, err := crypto.OpenStudyKey(rec.SealedKey, a.cfg.Owner.AgeIdentity())
	if err != nil {
		return nil, fmt.Errorf("read instance %s: %w", sopUID, err)
	}
	data, err := a.readObject(ctx, in.Root, key, in.Compressed)
	if err != nil {
		return nil, fmt.Errorf("read instance %s: %w", sopUID, err)
	}
	if sha256.Sum256(data) != in.SHA256 {
		return nil, fmt.Errorf("read instance %s: content does not match its recorded SHA-256", sopUID)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// readObject reassembles, decrypts and decompresses one encrypted object.
func (a *Archive) readObject(ctx context.Context, root cid.Cid, key *crypto.StudyKey, compressed bool) ([]byte, error) {
	blk, err := a.bs.Get(ctx, root)
	if err != nil {
		return nil, err
	}
	var ct bytes.Buffer
	if root.Type() == cid.Raw {
		// An object that fits in one block is that block.
		ct.Write(blk.RawData())
	} else {
		node, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			return nil, fmt.Errorf("object node %s: %w", root, err)
		}
		for _, l := range node.Links() {
			b, err := a.bs.Get(ctx, l.Cid)
			if err != nil {
				return nil, err
			}
			ct.Write(b.RawData())
		}
	}
	r, err := key.Decrypt(&ct)
	if err != nil {
		return nil, err
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if compressed {
		return a.zdec.DecodeAll(plain, nil)
	}
	return plain, nil
}

// Export writes a study's instances to dir/<series UID>/<SOP UID>.dcm, each
// verified against its SHA-256.
func (a *Archive) Export(ctx context.Context, studyUID, dir string) (int, error) {
	st, err := a.Study(studyUID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, se := range st.Series {
		sd := filepath.Join(dir, se.UID)
		if err := os.MkdirAll(sd, 0o755); err != nil {
			return n, err
		}
		for _, in := range se.Instances {
			rc, err := a.ReadInstance(ctx, studyUID, in.SOPInstanceUID)
			if err != nil {
				return n, err
			}
			data, _ := io.ReadAll(rc)
			if err := os.WriteFile(filepath.Join(sd, in.SOPInstanceUID+".dcm"), data, 0o644); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// putObject encrypts data and chunks the ciphertext into raw blocks under
// one dag-pb node, and returns the object's root and the blocks written. An
// object that fits in one block is rooted at that block, with no node.
func (a *Archive) putObject(ctx context.Context, key *crypto.StudyKey, data []byte) (cid.Cid, []cid.Cid, error) {
	var ct bytes.Buffer
	ct.Grow(len(data) + 512)
	w, err := key.Encrypt(&ct)
	if err != nil {
		return cid.Undef, nil, err
	}
	if _, err := w.Write(data); err != nil {
		return cid.Undef, nil, err
	}
	if err := w.Close(); err != nil {
		return cid.Undef, nil, err
	}
	node := merkledag.NodeWithData(nil)
	node.SetCidBuilder(nodeBuilder)
	var written []cid.Cid
	b := ct.Bytes()
	for i := 0; len(b) > 0; i++ {
		n := min(len(b), BlockSize)
		c, err := rawPrefix.Sum(b[:n])
		if err != nil {
			return cid.Undef, written, err
		}
		blk, _ := blocks.NewBlockWithCid(b[:n], c)
		if err := a.bs.Put(ctx, blk); err != nil {
			return cid.Undef, written, err
		}
		written = append(written, c)
		node.AddRawLink(fmt.Sprintf("c%d", i), &ipld.Link{Cid: c, Size: uint64(n)})
		b = b[n:]
	}
	if len(written) == 1 {
		return written[0], written, nil
	}
	if err := a.bs.Put(ctx, node); err != nil {
		return cid.Undef, written, err
	}
	return node.Cid(), append(written, node.Cid()), nil
}

// sweep deletes every block not reachable from a committed study and clears
// the pending markers. It runs at Open after an interrupted write.
func (a *Archive) sweep(ctx context.Context) error {
	live := map[cid.Cid]bool{}
	for _, rec := range a.studies {
		if err := a.mark(ctx, rec.Study.Root, live); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	ch, err := a.bs.AllKeysChan(ctx)
	if err != nil {
		return err
	}
	removed := 0
	for c := range ch {
		if !live[c] {
			if err := a.bs.DeleteBlock(ctx, c); err != nil {
				return err
			}
			removed++
		}
	}
	a.log.Info("swept blocks of interrupted writes", "removed", removed)
	return a.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketPending); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketPending)
		return err
	})
}

// mark adds c and everything below it to live.
func (a *Archive) mark(ctx context.Context, c cid.Cid, live map[cid.Cid]bool) error {
	if live[c] {
		return nil
	}
	live[c] = true
	if c.Type() != cid.DagProtobuf {
		return nil
	}
	blk, err := a.bs.Get(ctx, c)
	if err != nil {
		return err
	}
	node, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return err
	}
	for _, l := range node.Links() {
		if err := a.mark(ctx, l.Cid, live); err != nil {
			return err
		}
	}
	return nil
}
