package archive

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	bolt "go.etcd.io/bbolt"

	"github.com/dicomesh/dicomesh/crypto"
)

// ErrEnded is returned by Add and Commit on a Tx that was committed or
// rolled back.
var ErrEnded = errors.New("archive: transaction already ended")

// Tx adds instances to one study. Add may be called from several goroutines
// at once; Commit or Rollback ends the Tx, after the Adds have returned.
//
// A Tx writes its blocks as Add is called, syncing them in the background,
// and records the study in the index only in Commit. Until then a durable
// pending marker makes the next Open delete the blocks of a Tx that never
// ended (the process died).
type Tx struct {
	a       *Archive
	uid     string
	pending []byte // marker key in the pending bucket
	key     *crypto.StudyKey
	sealed  []byte
	prev    *summary // nil for a new study
	batch   syncBatch

	mu       sync.Mutex
	objs     map[string]Instance     // the next version's instances, by SOP Instance UID
	metas    map[string]InstanceMeta // metadata of the instances added by this Tx
	prevMeta map[string]InstanceMeta // metadata of the previous version's instances
	prevObjs map[string]Instance     // the previous version's instances
	written  map[string][]cid.Cid    // blocks of the instances added by this Tx
	adding   map[string][32]byte     // SHA-256 of the instances being added now
	orphans  []cid.Cid               // blocks written by this Tx that nothing will reference
	inflight sync.WaitGroup
	finished bool
}

// Begin starts writing to a study, new or existing. It does not wait: if the
// study already has an open Tx it returns an error wrapping ErrBusy. Txs of
// different studies may be open at once.
func (a *Archive) Begin(studyUID string) (*Tx, error) {
	if studyUID == "" {
		return nil, errors.New("begin: empty study UID")
	}
	a.mu.Lock()
	if a.busy[studyUID] {
		a.mu.Unlock()
		return nil, fmt.Errorf("begin %s: %w", studyUID, ErrBusy)
	}
	a.busy[studyUID] = true
	_, exists := a.studies[studyUID]
	a.mu.Unlock()

	tx := &Tx{a: a, uid: studyUID, objs: map[string]Instance{}, metas: map[string]InstanceMeta{}, adding: map[string][32]byte{},
		prevMeta: map[string]InstanceMeta{}, prevObjs: map[string]Instance{}, written: map[string][]cid.Cid{}}
	tx.batch.init(a.bs.mode)
	fail := func(err error) (*Tx, error) {
		a.release(studyUID)
		return nil, fmt.Errorf("begin %s: %w", studyUID, err)
	}
	var err error
	if exists {
		prev, c, err := a.full(studyUID)
		if err != nil {
			return fail(err)
		}
		tx.prev, tx.sealed = prev, prev.SealedKey
		if tx.key, err = crypto.OpenStudyKey(prev.SealedKey, a.cfg.Owner.AgeIdentity()); err != nil {
			return fail(err)
		}
		for _, se := range c.series {
			for _, in := range se.Instances {
				tx.objs[in.SOPInstanceUID] = in
				tx.prevObjs[in.SOPInstanceUID] = in
				tx.prevMeta[in.SOPInstanceUID] = metaOf(&prev.Study, &se, &in)
			}
		}
	} else {
		if tx.key, err = crypto.GenerateStudyKey(); err != nil {
			return fail(err)
		}
		if tx.sealed, err = tx.key.Seal(a.cfg.Owner.Recipient()); err != nil {
			return fail(err)
		}
	}
	tx.pending = make([]byte, 16)
	rand.Read(tx.pending)
	if err := a.db.Update(func(btx *bolt.Tx) error {
		return btx.Bucket(bucketPending).Put(tx.pending, nil)
	}); err != nil {
		return fail(err)
	}
	return tx, nil
}

func (a *Archive) release(uid string) {
	a.mu.Lock()
	delete(a.busy, uid)
	close(a.ended)
	a.ended = make(chan struct{})
	a.mu.Unlock()
}

// BeginWait is Begin that waits, until ctx ends, for the study's open Tx
// to end instead of returning ErrBusy. The caller must hold no other Tx:
// two callers each holding a study the other waits for would wait forever.
func (a *Archive) BeginWait(ctx context.Context, studyUID string) (*Tx, error) {
	for {
		tx, err := a.Begin(studyUID)
		if !errors.Is(err, ErrBusy) {
			return tx, err
		}
		if err := a.Idle(ctx, studyUID); err != nil {
			return nil, fmt.Errorf("begin %s: %w", studyUID, err)
		}
	}
}

// Idle waits until studyUID has no open Tx, or ctx ends. A writer that
// got ErrBusy from Begin may release what it holds, wait here and begin
// again (another writer may still come first).
func (a *Archive) Idle(ctx context.Context, studyUID string) error {
	for {
		a.mu.Lock()
		busy, ended := a.busy[studyUID], a.ended
		a.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// metaOf rebuilds the metadata of a stored instance.
func metaOf(s *Study, se *Series, in *Instance) InstanceMeta {
	return InstanceMeta{
		SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, SeriesInstanceUID: se.UID,
		StudyInstanceUID: s.UID, TransferSyntaxUID: in.TransferSyntaxUID,
		PatientID: s.PatientID, IssuerOfPatientID: s.Issuer, PatientName: s.PatientName,
		PatientBirthDate: s.BirthDate, PatientSex: s.Sex, StudyDate: s.StudyDate, StudyTime: s.StudyTime,
		StudyDescription: s.Description, AccessionNumber: s.Accession, StudyID: s.StudyID, Referrer: s.Referrer,
		Modality:         se.Modality,
		BodyPartExamined: se.BodyPart, SeriesDescription: se.Description, SeriesNumber: se.Number,
		InstanceNumber: in.Number,
	}
}

// Add compresses (for the uncompressed transfer syntaxes, when that saves at
// least a tenth), encrypts to the study key, chunks and writes the blocks of
// one instance. It is safe for concurrent use. added is false when the study
// already holds an instance with the same SOP Instance UID and the same
// SHA-256 (nothing is written); the same SOP Instance UID with other bytes
// replaces that instance in the next version. Nothing of data is kept once
// Add returns: the caller may reuse it.
func (tx *Tx) Add(ctx context.Context, meta InstanceMeta, data []byte) (added bool, err error) {
	if meta.StudyInstanceUID != tx.uid {
		return false, fmt.Errorf("add %s: belongs to study %s, not %s", meta.SOPInstanceUID, meta.StudyInstanceUID, tx.uid)
	}
	if meta.SOPInstanceUID == "" || meta.SeriesInstanceUID == "" {
		return false, errors.New("add: instance without SOP Instance UID or Series Instance UID")
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("add %s: %w", meta.SOPInstanceUID, err)
	}
	sum := sha256.Sum256(data)
	tx.mu.Lock()
	if tx.finished {
		tx.mu.Unlock()
		return false, fmt.Errorf("add %s: %w", meta.SOPInstanceUID, ErrEnded)
	}
	if old, ok := tx.objs[meta.SOPInstanceUID]; ok && old.SHA256 == sum {
		tx.mu.Unlock()
		return false, nil
	}
	if s, ok := tx.adding[meta.SOPInstanceUID]; ok && s == sum {
		// The same bytes are being added by another goroutine: one copy
		// is stored and counted once.
		tx.mu.Unlock()
		return false, nil
	}
	tx.adding[meta.SOPInstanceUID] = sum
	tx.inflight.Add(1)
	tx.mu.Unlock()
	defer tx.inflight.Done()

	payload, compressed, shuffled := encode(data, meta.TransferSyntaxUID)
	ct, err := encrypt(tx.key, payload)
	if compressed {
		putBuf(payload)
	}
	if err != nil {
		return false, fmt.Errorf("add %s: %w", meta.SOPInstanceUID, err)
	}
	root, written, err := tx.a.putObject(ct, &tx.batch)
	putBuf(ct)

	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.adding[meta.SOPInstanceUID] == sum {
		delete(tx.adding, meta.SOPInstanceUID)
	}
	if err != nil {
		tx.orphans = append(tx.orphans, written...)
		return false, fmt.Errorf("add %s: %w", meta.SOPInstanceUID, err)
	}
	tx.orphans = append(tx.orphans, tx.written[meta.SOPInstanceUID]...)
	tx.written[meta.SOPInstanceUID] = written
	tx.objs[meta.SOPInstanceUID] = Instance{
		SOPInstanceUID: meta.SOPInstanceUID, SOPClassUID: meta.SOPClassUID,
		TransferSyntaxUID: meta.TransferSyntaxUID, Number: meta.InstanceNumber,
		Size: int64(len(data)), SHA256: sum, Root: root, Compressed: compressed, Shuffled: shuffled,
	}
	tx.metas[meta.SOPInstanceUID] = meta
	return true, nil
}

// end marks the Tx finished and waits for the Adds in flight.
func (tx *Tx) end() error {
	tx.mu.Lock()
	if tx.finished {
		tx.mu.Unlock()
		return ErrEnded
	}
	tx.finished = true
	tx.mu.Unlock()
	tx.inflight.Wait()
	return nil
}

// Commit writes the detail manifest and the study root, waits until every
// block of the study is synced, then records the study in the index in one
// transaction: the single commit point. A Tx that added nothing records
// nothing and returns the study as it was (Study{} for a new study). The new
// version links the previous version's encrypted instances as they are;
// blocks of the previous version that it no longer references (its root,
// manifest, replaced instances) are deleted after the commit.
func (tx *Tx) Commit(ctx context.Context) (Study, error) {
	if err := tx.end(); err != nil {
		return Study{}, fmt.Errorf("commit %s: %w", tx.uid, err)
	}
	a := tx.a
	defer a.release(tx.uid)
	if len(tx.written) == 0 {
		tx.discard()
		if tx.prev == nil {
			return Study{}, nil
		}
		return a.Study(tx.uid)
	}
	fail := func(err error) (Study, error) {
		tx.discard()
		return Study{}, fmt.Errorf("commit %s: %w", tx.uid, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	st := tx.study()

	plain, err := json.Marshal(manifest{Format: manifestFormat, Study: st})
	if err != nil {
		return fail(err)
	}
	ct, err := encrypt(tx.key, plain)
	if err != nil {
		return fail(err)
	}
	mroot, written, err := a.putObject(ct, &tx.batch)
	putBuf(ct)
	tx.orphans = append(tx.orphans, written...) // until committed
	if err != nil {
		return fail(err)
	}
	root := merkledag.NodeWithData(nil)
	root.SetCidBuilder(nodeBuilder)
	root.AddRawLink("m", &ipld.Link{Cid: mroot})
	i := 0
	for _, se := range st.Series {
		for _, in := range se.Instances {
			root.AddRawLink(instanceLink(i), &ipld.Link{Cid: in.Root})
			i++
		}
	}
	if err := a.bs.put(root.Cid(), root.RawData(), &tx.batch); err != nil {
		return fail(err)
	}
	tx.orphans = append(tx.orphans, root.Cid())
	if err := tx.batch.wait(); err != nil {
		return fail(err)
	}
	st.Root = root.Cid()
	if a.cfg.BeforeCommit != nil {
		if err := a.cfg.BeforeCommit(ctx, st); err != nil {
			return fail(err)
		}
	}

	sum := &summary{Study: st, SealedKey: tx.sealed, Manifest: mroot}
	sum.Study.Series = nil
	key := a.indexKey(st.UID)
	sv, err := a.sealValue(bucketStudies, key, sum)
	if err != nil {
		return fail(err)
	}
	dv, err := a.sealValue(bucketSeries, key, detail{Series: st.Series})
	if err != nil {
		return fail(err)
	}
	// What the previous version alone referenced becomes garbage with this
	// commit, and so do the blocks of instances replaced within this Tx. The
	// pending marker stays until they are deleted, so that a crash in
	// between leaves the sweep to finish the job.
	garbage := tx.orphans[:0]
	for _, c := range tx.orphans {
		if !c.Equals(mroot) && !c.Equals(root.Cid()) {
			garbage = append(garbage, c)
		}
	}
	var old []cid.Cid
	if tx.prev != nil {
		live := map[cid.Cid]bool{}
		for _, in := range tx.objs {
			live[in.Root] = true
		}
		garbage = append(garbage, tx.prev.Study.Root)
		old = append(old, tx.prev.Manifest)
		for _, in := range tx.prevObjs {
			if !live[in.Root] {
				old = append(old, in.Root)
			}
		}
	}
	keepMarker := len(garbage) > 0 || len(old) > 0
	if err := a.db.Update(func(btx *bolt.Tx) error {
		if err := btx.Bucket(bucketStudies).Put(key, sv); err != nil {
			return err
		}
		if err := btx.Bucket(bucketSeries).Put(key, dv); err != nil {
			return err
		}
		if keepMarker {
			return nil
		}
		return btx.Bucket(bucketPending).Delete(tx.pending)
	}); err != nil {
		return fail(err)
	}
	a.mu.Lock()
	a.studies[st.UID] = sum
	if len(a.cache) >= maxCached {
		clear(a.cache)
	}
	a.cache[st.UID] = newCached(st.Version, st.Series)
	a.mu.Unlock()

	if keepMarker {
		clean := true
		for _, r := range old {
			cs, err := a.objectBlocks(ctx, r)
			if err != nil {
				a.log.Warn("cannot list the blocks of a replaced object", "err", err)
				clean = false
				continue
			}
			garbage = append(garbage, cs...)
		}
		for _, c := range garbage {
			if err := a.bs.DeleteBlock(ctx, c); err != nil {
				a.log.Warn("cannot delete a block no longer referenced", "cid", c.String(), "err", err)
				clean = false
			}
		}
		if clean {
			tx.dropMarker()
		}
	}
	return st, nil
}

// objectBlocks lists every block of an object, its root included.
func (a *Archive) objectBlocks(ctx context.Context, root cid.Cid) ([]cid.Cid, error) {
	if root.Type() == cid.Raw {
		return []cid.Cid{root}, nil
	}
	cs, err := chunks(ctx, a.bs, root)
	if err != nil {
		return nil, err
	}
	return append(cs, root), nil
}

// Rollback deletes what the Tx wrote and ends it. It is a no-op after Commit.
func (tx *Tx) Rollback() {
	if tx.end() != nil {
		return
	}
	tx.discard()
	tx.a.release(tx.uid)
}

// discard waits for the Tx's files, deletes every block it wrote (fresh
// ciphertext, which no other study refers to) and its pending marker.
func (tx *Tx) discard() {
	tx.batch.wait()
	ctx := context.Background()
	for _, cs := range tx.written {
		for _, c := range cs {
			tx.a.bs.DeleteBlock(ctx, c)
		}
	}
	for _, c := range tx.orphans {
		tx.a.bs.DeleteBlock(ctx, c)
	}
	tx.dropMarker()
}

// dropMarker deletes the Tx's pending marker. Should that fail, the next Open
// sweeps needlessly, which is harmless.
func (tx *Tx) dropMarker() {
	if err := tx.a.db.Update(func(btx *bolt.Tx) error { return btx.Bucket(bucketPending).Delete(tx.pending) }); err != nil {
		tx.a.log.Warn("cannot clear a pending marker; the next open sweeps", "err", err)
	}
}

// study builds the record of the next version from all its instances.
// Study-level fields come from the added instance with the lowest SOP
// Instance UID (the previous version's when nothing was added), series
// fields likewise within each series.
func (tx *Tx) study() Study {
	var st Study
	if tx.prev != nil {
		st = tx.prev.Study
		st.Series, st.Instances, st.Bytes = nil, 0, 0
	}
	st.Version++
	st.UID = tx.uid
	st.StoredAt = tx.a.cfg.Now().UTC()
	sops := make([]string, 0, len(tx.objs))
	for sop := range tx.objs {
		sops = append(sops, sop)
	}
	sort.Strings(sops)
	study := false
	series := map[string]*Series{}
	fresh := map[string]bool{} // series whose fields come from an added instance
	mods, parts := map[string]bool{}, map[string]bool{}
	for _, sop := range sops {
		in := tx.objs[sop]
		m, added := tx.metas[sop]
		if !added {
			m = tx.prevMeta[sop]
		}
		if added && !study {
			study = true
			st.PatientID, st.Issuer, st.PatientName = m.PatientID, m.IssuerOfPatientID, m.PatientName
			st.BirthDate, st.Sex, st.StudyDate, st.StudyTime = m.PatientBirthDate, m.PatientSex, m.StudyDate, m.StudyTime
			st.Description, st.Accession = m.StudyDescription, m.AccessionNumber
			st.StudyID, st.Referrer = m.StudyID, m.Referrer
		}
		se := series[m.SeriesInstanceUID]
		if se == nil || (added && !fresh[m.SeriesInstanceUID]) {
			if se == nil {
				se = &Series{UID: m.SeriesInstanceUID}
				series[m.SeriesInstanceUID] = se
			}
			se.Number, se.Modality, se.BodyPart, se.Description = m.SeriesNumber, m.Modality, m.BodyPartExamined, m.SeriesDescription
			fresh[m.SeriesInstanceUID] = added
		}
		se.Instances = append(se.Instances, in)
		st.Instances++
		st.Bytes += in.Size
	}
	for _, se := range series {
		sort.Slice(se.Instances, func(i, j int) bool {
			a, b := se.Instances[i], se.Instances[j]
			if a.Number != b.Number {
				return a.Number < b.Number
			}
			return a.SOPInstanceUID < b.SOPInstanceUID
		})
		st.Series = append(st.Series, *se)
		if se.Modality != "" {
			mods[se.Modality] = true
		}
		if se.BodyPart != "" {
			parts[se.BodyPart] = true
		}
	}
	sort.Slice(st.Series, func(i, j int) bool {
		if st.Series[i].Number != st.Series[j].Number {
			return st.Series[i].Number < st.Series[j].Number
		}
		return st.Series[i].UID < st.Series[j].UID
	})
	st.SeriesCount = len(st.Series)
	st.Modalities, st.BodyParts = sortedKeys(mods), sortedKeys(parts)
	return st
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
