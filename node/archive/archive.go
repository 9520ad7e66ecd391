package archive

import (
	"context"
	"crypto/cipher"
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
	"github.com/ipfs/go-cid"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dicomesh/dicomesh/crypto"
)

// ErrBusy is returned by Begin when the study already has an open Tx.
var ErrBusy = errors.New("archive: study is being written")

// Index buckets. Keys of studies and series are HMAC-SHA-256 of the Study
// Instance UID; values are sealed with XChaCha20-Poly1305, the bucket name and
// key as associated data. pending holds one random key per open Tx.
var (
	bucketStudies = []byte("studies") // summary: Study without Series, sealed key, manifest
	bucketSeries  = []byte("series")  // the series and instances of a study
	bucketPending = []byte("pending")
)

// summary is the index record of a study kept in memory.
type summary struct {
	Study     Study // Series nil
	SealedKey []byte
	Manifest  cid.Cid // root of the encrypted detail manifest
}

// detail is the index record of a study's series, read on demand.
type detail struct {
	Series []Series
}

// manifestFormat names the encoding of the detail manifest object.
const manifestFormat = "dicomesh/archive/detail/v1"

// maxManifest bounds the detail manifest read back.
const maxManifest = 256 << 20

// manifest is the plaintext of the detail manifest object: the whole study
// record (Root unset), enough to rebuild the index entry from the study's
// root and key alone.
type manifest struct {
	Format string
	Study  Study
}

// Archive is a facility's study store. It is safe for concurrent use.
type Archive struct {
	cfg  Config
	bs   *fileStore
	db   *bolt.DB
	mac  [32]byte
	seal cipher.AEAD
	log  *slog.Logger

	mu      sync.RWMutex
	studies map[string]*summary
	busy    map[string]bool
	ended   chan struct{}      // closed, and replaced, whenever a Tx ends (Idle)
	cache   map[string]*cached // details recently read, by study UID
	// checked are the instance roots already checked by a Precheck, by
	// the root of the study being received.
	checked map[cid.Cid]map[cid.Cid]bool
}

// cached is a study's detail with its instances by SOP Instance UID.
type cached struct {
	version int
	series  []Series
	bySOP   map[string]Instance
}

const maxCached = 64

// DefaultConfig returns a configuration with every optional field set; Dir
// and Owner remain to be filled in.
func DefaultConfig() Config {
	return Config{Now: time.Now, Logger: slog.New(slog.DiscardHandler)}
}

// Validate reports whether c can be opened.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("archive config: Dir is required")
	case c.Owner == nil:
		return errors.New("archive config: Owner is required")
	}
	return nil
}

// Prepare lays out an archive's folders in dir ahead of its first Open,
// which then finds them made (and synced).
func Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("prepare archive: %w", err)
	}
	if _, err := newFileStore(filepath.Join(dir, "blocks"), syncFilesystem); err != nil {
		return fmt.Errorf("prepare archive: %w", err)
	}
	return nil
}

// Open opens or creates the archive in cfg.Dir. If a write was interrupted
// (the process died with a Tx open), every block that no committed study
// references is deleted before Open returns.
func Open(cfg Config) (*Archive, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	def := DefaultConfig()
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	mode := syncFilesystem
	switch {
	case cfg.NoSync:
		mode = syncNone
	case cfg.PerFileSync || !haveSyncFS:
		mode = syncFiles
	}
	bs, err := newFileStore(filepath.Join(cfg.Dir, "blocks"), mode)
	if err != nil {
		return nil, fmt.Errorf("open archive blocks: %w", err)
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
	a := &Archive{
		cfg: cfg, bs: bs, db: db, mac: cfg.Owner.DeriveKey("archive index key"), seal: aead, log: cfg.Logger,
		studies: map[string]*summary{}, busy: map[string]bool{}, ended: make(chan struct{}), cache: map[string]*cached{}, checked: map[cid.Cid]map[cid.Cid]bool{},
	}
	pending := 0
	err = db.Update(func(tx *bolt.Tx) error {
		sb, err := tx.CreateBucketIfNotExists(bucketStudies)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketSeries); err != nil {
			return err
		}
		pb, err := tx.CreateBucketIfNotExists(bucketPending)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketIncoming); err != nil {
			return err
		}
		pending = pb.Stats().KeyN
		return sb.ForEach(func(k, v []byte) error {
			var s summary
			if err := a.unseal(bucketStudies, k, v, &s); err != nil {
				return fmt.Errorf("index entry: %w", err)
			}
			a.studies[s.Study.UID] = &s
			return nil
		})
	})
	if err == nil && pending > 0 {
		err = a.sweep(context.Background())
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open archive %s: %w", cfg.Dir, err)
	}
	return a, nil
}

// Close closes the index. Open Txs must have ended.
func (a *Archive) Close() error {
	return a.db.Close()
}

// Blockstore returns the block store holding the studies' ciphertext. Every
// block read from it is checked against its CID; Put syncs before returning.
// Blocks put there that no committed study references are deleted by the
// sweep that follows an interrupted write.
func (a *Archive) Blockstore() blockstore.Blockstore { return a.bs }

func (a *Archive) indexKey(uid string) []byte {
	m := hmac.New(sha256.New, a.mac[:])
	m.Write([]byte(uid))
	return m.Sum(nil)
}

func ad(bucket, key []byte) []byte {
	return append(append(append([]byte{}, bucket...), 0), key...)
}

func (a *Archive) sealValue(bucket, key []byte, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.seal.NonceSize(), a.seal.NonceSize()+len(plain)+a.seal.Overhead())
	rand.Read(nonce)
	return a.seal.Seal(nonce, nonce, plain, ad(bucket, key)), nil
}

func (a *Archive) unseal(bucket, key, v []byte, out any) error {
	n := a.seal.NonceSize()
	if len(v) < n {
		return errors.New("sealed value too short")
	}
	plain, err := a.seal.Open(nil, v[:n], v[n:], ad(bucket, key))
	if err != nil {
		return errors.New("sealed value does not authenticate (tampered, or another facility's key)")
	}
	return json.Unmarshal(plain, out)
}

// Study returns the latest version of a study, with its series and instances.
func (a *Archive) Study(uid string) (Study, error) {
	s, c, err := a.full(uid)
	if err != nil {
		return Study{}, err
	}
	st := s.Study
	st.Series = c.series
	return st, nil
}

// full returns a study's summary and detail.
func (a *Archive) full(uid string) (*summary, *cached, error) {
	a.mu.RLock()
	s, ok := a.studies[uid]
	c := a.cache[uid]
	a.mu.RUnlock()
	if !ok {
		return nil, nil, fmt.Errorf("study %s: %w", uid, ErrNotFound)
	}
	if c != nil && c.version == s.Study.Version {
		return s, c, nil
	}
	var d detail
	key := a.indexKey(uid)
	err := a.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSeries).Get(key)
		if v == nil {
			return fmt.Errorf("series of study %s missing from the index", uid)
		}
		return a.unseal(bucketSeries, key, v, &d)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("study %s: %w", uid, err)
	}
	c = newCached(s.Study.Version, d.Series)
	a.mu.Lock()
	if cur := a.studies[uid]; cur != nil && cur.Study.Version == c.version {
		if len(a.cache) >= maxCached {
			clear(a.cache)
		}
		a.cache[uid] = c
	}
	a.mu.Unlock()
	return s, c, nil
}

func newCached(version int, series []Series) *cached {
	c := &cached{version: version, series: series, bySOP: map[string]Instance{}}
	for _, se := range series {
		for _, in := range se.Instances {
			c.bySOP[in.SOPInstanceUID] = in
		}
	}
	return c
}

// HasInstance reports whether the study holds the instance.
func (a *Archive) HasInstance(studyUID, sopInstanceUID string) bool {
	_, c, err := a.full(studyUID)
	if err != nil {
		return false
	}
	_, ok := c.bySOP[sopInstanceUID]
	return ok
}

// Studies returns the studies matching q, newest study date first, then by
// UID. The results are summaries: Series is nil (SeriesCount is set); Study
// returns the series and instances.
func (a *Archive) Studies(q Query) ([]Study, error) {
	a.mu.RLock()
	var out []Study
	for _, s := range a.studies {
		if q.matches(&s.Study) {
			out = append(out, s.Study)
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
	id, issuer := s.PatientID, s.Issuer
	if s.LocalPatientID != "" {
		id, issuer = s.LocalPatientID, s.LocalIssuer
	}
	switch {
	case q.PatientID != "" && q.PatientID != id,
		q.Issuer != "" && q.Issuer != issuer,
		q.Accession != "" && q.Accession != s.Accession,
		q.PatientName != "" && !q.nameMatches(s.PatientName),
		q.Modality != "" && !slices.Contains(s.Modalities, q.Modality),
		q.DateFrom != "" && s.StudyDate < q.DateFrom,
		q.DateTo != "" && s.StudyDate > q.DateTo:
		return false
	}
	return true
}

// nameMatches matches a patient name as the Query documents.
func (q Query) nameMatches(name string) bool {
	pat := strings.ToUpper(q.PatientName)
	name = strings.ToUpper(name)
	if strings.ContainsAny(pat, "*?") {
		if wildcard(pat, name) {
			return true
		}
	} else if strings.HasPrefix(name, pat) {
		return true
	}
	if !q.FuzzyName {
		return false
	}
	pat = strings.Trim(pat, "*")
	for _, c := range strings.FieldsFunc(name, func(r rune) bool { return r == '^' || r == ' ' || r == '=' }) {
		if pat != "" && strings.HasPrefix(c, pat) {
			return true
		}
	}
	return false
}

// wildcard matches s against a DICOM pattern: * any run, ? one character.
func wildcard(pat, s string) bool {
	p, r := []rune(pat), []rune(s)
	// star and mark remember the last * and where it resumed: the usual
	// linear-time backtracking over a single star.
	i, j, star, mark := 0, 0, -1, 0
	for j < len(r) {
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == r[j]):
			i, j = i+1, j+1
		case i < len(p) && p[i] == '*':
			star, mark = i, j
			i++
		case star >= 0:
			mark++
			i, j = star+1, mark
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

// StudyKey returns the key a study's blocks are encrypted to.
func (a *Archive) StudyKey(studyUID string) (*crypto.StudyKey, error) {
	a.mu.RLock()
	s, ok := a.studies[studyUID]
	a.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("study %s: %w", studyUID, ErrNotFound)
	}
	k, err := crypto.OpenStudyKey(s.SealedKey, a.cfg.Owner.AgeIdentity())
	if err != nil {
		return nil, fmt.Errorf("study %s: %w", studyUID, err)
	}
	return k, nil
}

// ReadInstance returns a reader of an instance's original bytes, decrypted
// and decompressed as they are read. Every block is checked against its CID
// and every ciphertext chunk authenticated before its bytes are returned; at
// the end the size and SHA-256 recorded at ingest are checked, and a mismatch
// is returned instead of io.EOF. A damaged block is an error wrapping
// ErrCorrupt (or an authentication error), never wrong bytes.
func (a *Archive) ReadInstance(ctx context.Context, studyUID, sopInstanceUID string) (io.ReadCloser, error) {
	s, c, err := a.full(studyUID)
	if err != nil {
		return nil, err
	}
	in, ok := c.bySOP[sopInstanceUID]
	if !ok {
		return nil, fmt.Errorf("instance %s of study %s: %w", sopInstanceUID, studyUID, ErrNotFound)
	}
	key, err := crypto.OpenStudyKey(s.SealedKey, a.cfg.Owner.AgeIdentity())
	if err != nil {
		return nil, fmt.Errorf("read instance %s: %w", sopInstanceUID, err)
	}
	r, err := openInstance(ctx, a.bs, key, in)
	if err != nil {
		return nil, fmt.Errorf("read instance %s: %w", sopInstanceUID, err)
	}
	return r, nil
}

// exportWorkers is how many instances Export reads and writes at once.
const exportWorkers = 4

// Export writes a study's instances to dir/<series UID>/<SOP UID>.dcm. Each
// file is written under a temporary name and renamed once its content has
// matched the recorded SHA-256, so a file with the final name is always
// complete and correct. It returns how many files were written.
func (a *Archive) Export(ctx context.Context, studyUID, dir string) (n int, err error) {
	s, c, err := a.full(studyUID)
	if err != nil {
		return 0, err
	}
	key, err := crypto.OpenStudyKey(s.SealedKey, a.cfg.Owner.AgeIdentity())
	if err != nil {
		return 0, fmt.Errorf("export %s: %w", studyUID, err)
	}
	type job struct {
		dir string
		in  Instance
	}
	var jobs []job
	for _, se := range c.series {
		sd := filepath.Join(dir, se.UID)
		if err := os.MkdirAll(sd, 0o755); err != nil {
			return 0, fmt.Errorf("export %s: %w", studyUID, err)
		}
		for _, in := range se.Instances {
			jobs = append(jobs, job{sd, in})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  = make(chan job)
	)
	for range min(exportWorkers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for j := range next {
				err := a.exportOne(ctx, key, j.in, j.dir, buf)
				mu.Lock()
				if err == nil {
					n++
				} else if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		select {
		case next <- j:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		return n, fmt.Errorf("export %s: %w", studyUID, first)
	}
	return n, nil
}

func (a *Archive) exportOne(ctx context.Context, key *crypto.StudyKey, in Instance, dir string, buf []byte) error {
	r, err := openInstance(ctx, a.bs, key, in)
	if err != nil {
		return fmt.Errorf("instance %s: %w", in.SOPInstanceUID, err)
	}
	defer r.Close()
	f, err := os.CreateTemp(dir, ".export-*")
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(f, r, buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, in.SOPInstanceUID+".dcm"))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("instance %s: %w", in.SOPInstanceUID, err)
	}
	return nil
}

// LoadStudy rebuilds a study's record from its root and key alone, reading
// blocks from bs (the archive's or another store): it decrypts the detail
// manifest and checks that the root links exactly the instances it lists.
// StoredAt and Version are those of the commit that wrote the root.
func LoadStudy(ctx context.Context, bs blockstore.Blockstore, root cid.Cid, key *crypto.StudyKey) (Study, error) {
	st, _, err := loadManifest(ctx, bs, root, key)
	return st, err
}

// rootLinks returns the links of a study root by name, and the one to its
// detail manifest.
func rootLinks(node *merkledag.ProtoNode) (map[string]cid.Cid, cid.Cid, error) {
	// dag-pb keeps links sorted by name, so they are looked up by name.
	links := map[string]cid.Cid{}
	for _, l := range node.Links() {
		if _, dup := links[l.Name]; dup {
			return nil, cid.Undef, fmt.Errorf("link %q twice", l.Name)
		}
		links[l.Name] = l.Cid
	}
	mc, ok := links["m"]
	if !ok {
		return nil, cid.Undef, errors.New("no detail manifest link")
	}
	return links, mc, nil
}

// ManifestRoot returns the roots of the detail manifest and of the first
// instance of the study under root, whose root block must be in the
// store: a receiver fetches them first, so that instances can be checked,
// and read, as they arrive.
func (a *Archive) ManifestRoot(ctx context.Context, root cid.Cid) (manifest, first cid.Cid, err error) {
	blk, err := a.bs.Get(ctx, root)
	if err != nil {
		return cid.Undef, cid.Undef, err
	}
	node, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return cid.Undef, cid.Undef, err
	}
	links, mc, err := rootLinks(node)
	if err != nil {
		return cid.Undef, cid.Undef, err
	}
	first, ok := links[instanceLink(0)]
	if !ok {
		return cid.Undef, cid.Undef, errors.New("no instance link")
	}
	return mc, first, nil
}

func loadManifest(ctx context.Context, g getter, root cid.Cid, key *crypto.StudyKey) (Study, cid.Cid, error) {
	fail := func(err error) (Study, cid.Cid, error) {
		return Study{}, cid.Undef, fmt.Errorf("load study root %s: %w", root, err)
	}
	if root.Type() != cid.DagProtobuf {
		return fail(errors.New("not a dag-pb node"))
	}
	blk, err := g.Get(ctx, root)
	if err != nil {
		return fail(err)
	}
	node, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return fail(err)
	}
	links, mc, err := rootLinks(node)
	if err != nil {
		return fail(err)
	}
	plain, err := readObject(ctx, g, key, mc, maxManifest)
	if err != nil {
		return fail(fmt.Errorf("detail manifest: %w", err))
	}
	var m manifest
	if err := json.Unmarshal(plain, &m); err != nil {
		return fail(fmt.Errorf("detail manifest: %w", err))
	}
	if m.Format != manifestFormat {
		return fail(fmt.Errorf("detail manifest format %q, want %q", m.Format, manifestFormat))
	}
	i := 0
	for _, se := range m.Study.Series {
		for _, in := range se.Instances {
			if c, ok := links[instanceLink(i)]; !ok || !c.Equals(in.Root) {
				return fail(errors.New("root links and detail manifest disagree"))
			}
			i++
		}
	}
	if i+1 != len(links) {
		return fail(errors.New("root links and detail manifest disagree"))
	}
	m.Study.Root = root
	return m.Study, mc, nil
}

func instanceLink(i int) string { return fmt.Sprintf("i%d", i) }

// sweep deletes every block not reachable from a committed study, and
// leftover temporary files, then clears the pending markers. It runs at Open
// after an interrupted write.
func (a *Archive) sweep(ctx context.Context) error {
	live := map[cid.Cid]bool{}
	err := a.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSeries)
		for _, s := range a.studies {
			live[s.Study.Root] = true
			if err := a.markObject(ctx, s.Manifest, live); err != nil {
				return err
			}
			key := a.indexKey(s.Study.UID)
			v := sb.Get(key)
			if v == nil {
				return fmt.Errorf("series of study %s missing from the index", s.Study.UID)
			}
			var d detail
			if err := a.unseal(bucketSeries, key, v, &d); err != nil {
				return err
			}
			for _, se := range d.Series {
				for _, in := range se.Instances {
					if err := a.markObject(ctx, in.Root, live); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err == nil {
		// Blocks of studies being received are kept for the fetch to
		// resume.
		var roots []cid.Cid
		if roots, err = a.incomingRoots(); err == nil {
			for _, r := range roots {
				if err = a.markPartial(ctx, r, live); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		// Without the full live set nothing can be deleted safely: keep the
		// garbage and the markers, and try again at the next Open.
		a.log.Warn("cannot sweep the blocks of interrupted writes", "err", err)
		return nil
	}
	removed := 0
	var rmErr error
	err = a.bs.walk(ctx, func(c cid.Cid, path string) bool {
		if c.Defined() && live[c] {
			return true
		}
		if err := os.Remove(path); err != nil {
			rmErr = err
			return false
		}
		removed++
		return true
	})
	if err == nil {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	a.log.Info("swept the blocks of interrupted writes", "removed", removed)
	return a.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketPending); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketPending)
		return err
	})
}

// markObject adds an object's blocks to live.
func (a *Archive) markObject(ctx context.Context, root cid.Cid, live map[cid.Cid]bool) error {
	live[root] = true
	if root.Type() == cid.Raw {
		return nil
	}
	cs, err := chunks(ctx, a.bs, root)
	if err != nil {
		return err
	}
	for _, c := range cs {
		live[c] = true
	}
	return nil
}
