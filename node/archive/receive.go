package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	bolt "go.etcd.io/bbolt"

	"github.com/dicomesh/dicomesh/crypto"
)

// bucketIncoming holds the roots of studies being received: their blocks
// survive the sweep at Open, so that an interrupted pull resumes.
var bucketIncoming = []byte("incoming")

// ErrConflict reports a received study whose UID the archive already holds
// under another root that it may not replace.
var ErrConflict = errors.New("archive: study already held")

// Origin says where a received study came from.
type Origin struct {
	Facility string // the owner facility's id
	Manifest string // the registry manifest id
	// LocalPatientID and LocalIssuer, if set, name the patient as this
	// facility knows them (see Study).
	LocalPatientID, LocalIssuer string
}

// BeginReceive records that the study DAG under root is being fetched into
// the block store. Until CommitReceived or AbortReceive, its blocks survive
// the sweep of Open, so that a fetch interrupted by a crash resumes without
// fetching again what it verified. Calling it again is harmless.
func (a *Archive) BeginReceive(root cid.Cid) error {
	return a.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketIncoming)
		if err != nil {
			return err
		}
		return b.Put(root.Bytes(), []byte{1})
	})
}

// AbortReceive forgets an incoming root: its blocks are deleted by the next
// sweep unless a study references them.
func (a *Archive) AbortReceive(root cid.Cid) error {
	a.mu.Lock()
	delete(a.checked, root)
	a.mu.Unlock()
	return a.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIncoming)
		if b == nil {
			return nil
		}
		if err := b.Delete(root.Bytes()); err != nil {
			return err
		}
		// A pending marker makes the next Open sweep the blocks of the
		// abandoned fetch.
		return tx.Bucket(bucketPending).Put(append([]byte("abandoned "), root.Bytes()...), []byte{1})
	})
}

// incomingRoots returns the roots being received.
func (a *Archive) incomingRoots() ([]cid.Cid, error) {
	var roots []cid.Cid
	err := a.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIncoming)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			c, err := cid.Cast(k)
			if err != nil {
				return err
			}
			roots = append(roots, c)
			return nil
		})
	})
	return roots, err
}

// markPartial marks the blocks present under root, following the links of
// the nodes that are there and skipping what is missing.
func (a *Archive) markPartial(ctx context.Context, root cid.Cid, live map[cid.Cid]bool) error {
	if live[root] {
		return nil
	}
	if has, _ := a.bs.Has(ctx, root); !has {
		return nil
	}
	live[root] = true
	if root.Type() != cid.DagProtobuf {
		return nil
	}
	blk, err := a.bs.Get(ctx, root)
	if err != nil {
		return err
	}
	nd, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return err
	}
	for _, l := range nd.Links() {
		if err := a.markPartial(ctx, l.Cid, live); err != nil {
			return err
		}
	}
	return nil
}

// CommitReceived records a study received from another facility, whose
// every block is in the block store under root, with the study key the
// owner granted. It reads the detail manifest, checks that the root's links
// agree with it, decrypts every instance and checks its SHA-256 against the
// manifest, and only then commits the study to the index in one step, its
// key sealed to this archive's owner. The blocks stay as they arrived, so
// they can be served on to other members. The BeforeCommit hook runs as for
// a local commit.
//
// A study the archive already holds is replaced only by a newer version of
// a study received from the same facility; the same root again returns the
// study as it is; anything else is ErrConflict.
func (a *Archive) CommitReceived(ctx context.Context, root cid.Cid, key *crypto.StudyKey, from Origin) (Study, error) {
	fail := func(err error) (Study, error) {
		return Study{}, fmt.Errorf("commit received study %s: %w", root, err)
	}
	if from.Facility == "" {
		return fail(errors.New("no origin facility"))
	}
	st, mroot, err := loadManifest(ctx, a.bs, root, key)
	if err != nil {
		return fail(err)
	}
	a.mu.Lock()
	cur := a.studies[st.UID]
	a.mu.Unlock()
	if cur != nil {
		switch {
		case cur.Study.Root.Equals(root):
			return a.Study(st.UID)
		case cur.Study.Source != from.Facility || cur.Study.Version >= st.Version:
			return fail(fmt.Errorf("%w: %s (version %d from %q)", ErrConflict, st.UID, cur.Study.Version, cur.Study.Source))
		}
	}
	a.mu.Lock()
	done := maps.Clone(a.checked[root])
	a.mu.Unlock()
	if err := a.checkInstances(ctx, key, st, done); err != nil {
		return fail(err)
	}
	st.Root = root
	st.Source, st.SourceManifest = from.Facility, from.Manifest
	st.LocalPatientID, st.LocalIssuer = from.LocalPatientID, from.LocalIssuer
	st.StoredAt = a.cfg.Now().UTC()
	if a.cfg.BeforeCommit != nil {
		if err := a.cfg.BeforeCommit(ctx, st); err != nil {
			return fail(err)
		}
	}
	sealed, err := key.Seal(a.cfg.Owner.Recipient())
	if err != nil {
		return fail(err)
	}
	sum := &summary{Study: st, SealedKey: sealed, Manifest: mroot}
	sum.Study.Series = nil
	ik := a.indexKey(st.UID)
	sv, err := a.sealValue(bucketStudies, ik, sum)
	if err != nil {
		return fail(err)
	}
	dv, err := a.sealValue(bucketSeries, ik, detail{Series: st.Series})
	if err != nil {
		return fail(err)
	}
	if err := a.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketStudies).Put(ik, sv); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSeries).Put(ik, dv); err != nil {
			return err
		}
		if b := tx.Bucket(bucketIncoming); b != nil {
			return b.Delete(root.Bytes())
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	a.mu.Lock()
	delete(a.checked, root)
	a.studies[st.UID] = sum
	if len(a.cache) >= maxCached {
		clear(a.cache)
	}
	a.cache[st.UID] = newCached(st.Version, st.Series)
	a.mu.Unlock()
	return st, nil
}

// checkInstances checks every instance of st, a few at a time, but those
// whose root is in done.
func (a *Archive) checkInstances(ctx context.Context, key *crypto.StudyKey, st Study, done map[cid.Cid]bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan Instance)
	errs := make(chan error, exportWorkers)
	var wg sync.WaitGroup
	for range exportWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range next {
				if err := a.checkInstance(ctx, unhashedChunks{a.bs}, key, in); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for _, se := range st.Series {
		for _, in := range se.Instances {
			if done[in.Root] {
				continue
			}
			select {
			case next <- in:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// checkInstance decrypts one received instance and compares its SHA-256
// and size with the detail manifest.
func (a *Archive) checkInstance(ctx context.Context, src chunkSource, key *crypto.StudyKey, in Instance) error {
	r, err := openInstance(ctx, src, key, in)
	if err != nil {
		return fmt.Errorf("instance %s: %w", in.SOPInstanceUID, err)
	}
	defer r.Close()
	// The reader compares the size and SHA-256 with the manifest's at
	// the end and returns ErrCorrupt when they differ.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("check instance %s: %w", in.SOPInstanceUID, err)
	}
	return nil
}

// Receiver is the block store a fetch writes into: every block is checked
// against its CID and written at once, and the blocks are made durable
// together by Sync (one syncfs, or every file in the background) instead
// of one by one. Reads go to the archive's block store.
type Receiver struct {
	blockstore.Blockstore
	fs    *fileStore
	batch syncBatch

	// recent keeps the raw blocks just written, up to maxRecent bytes,
	// until a Precheck reads them: it checks them from memory, not from
	// the files.
	mu          sync.Mutex
	recent      map[cid.Cid][]byte
	recentBytes int
}

// maxRecent bounds the bytes a Receiver keeps for its Precheck; beyond
// that the check reads the files.
const maxRecent = 64 << 20

// keep remembers a raw block's data for the check.
func (r *Receiver) keep(c cid.Cid, data []byte) {
	if c.Type() != cid.Raw {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.recent[c]; ok || r.recentBytes+len(data) > maxRecent {
		return
	}
	if r.recent == nil {
		r.recent = map[cid.Cid][]byte{}
	}
	r.recent[c] = data
	r.recentBytes += len(data)
}

// kept reports whether a block is kept in memory.
func (r *Receiver) kept(c cid.Cid) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.recent[c]
	return ok
}

// take returns and forgets a kept block; the caller owns the data (the
// fetcher hands over a fresh slice with each block).
func (r *Receiver) take(c cid.Cid) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, ok := r.recent[c]
	if ok {
		delete(r.recent, c)
		r.recentBytes -= len(data)
	}
	return data, ok
}

// receivedChunks reads the chunks a Receiver kept from memory, the others
// from their files, without rehashing either: the check that reads them
// authenticates the ciphertext and hashes the instance (see
// unhashedChunks), and a kept block was verified against its CID on
// arrival.
type receivedChunks struct {
	*fileStore
	r *Receiver
}

func (rc receivedChunks) readChunk(c cid.Cid, buf []byte) ([]byte, error) {
	if data, ok := rc.r.take(c); ok {
		return data, nil
	}
	return rc.readChunkFile(c, buf)
}

// Receiver returns a Receiver on the archive's block store. Call Sync
// before CommitReceived.
func (a *Archive) Receiver() *Receiver {
	r := &Receiver{Blockstore: a.bs, fs: a.bs}
	r.batch.init(a.bs.mode)
	return r
}

// Put checks and writes one block; it is durable after Sync.
func (r *Receiver) Put(_ context.Context, b blocks.Block) error {
	if err := checkBlock(b); err != nil {
		return err
	}
	return r.write(b)
}

// PutVerified writes a block whose data its caller has checked against
// its CID (blocks.VerifiedPutter): only the CID's form is checked.
func (r *Receiver) PutVerified(_ context.Context, b blocks.Block) error {
	if err := checkProfile(b.Cid()); err != nil {
		return err
	}
	return r.write(b)
}

// write writes a checked block and keeps it for the Precheck.
func (r *Receiver) write(b blocks.Block) error {
	if err := r.fs.put(b.Cid(), b.RawData(), &r.batch); err != nil {
		return err
	}
	r.keep(b.Cid(), b.RawData())
	return nil
}

// PutMany puts each block.
func (r *Receiver) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if err := r.Put(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Sync makes every block put so far durable.
func (r *Receiver) Sync() error { return r.batch.wait() }
