package archive

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	bolt "go.etcd.io/bbolt"

	"github.com/dicomesh/dicomesh/crypto"
)

// Tx adds instances to one study. Add may be called from several goroutines;
// Commit or Rollback ends it.
type Tx struct {
	a       *Archive
	uid     string
	pending []byte // marker key in the pending bucket
	key     *crypto.StudyKey
	sealed  []byte
	prev    *record // nil for a new study

	mu       sync.Mutex
	metas    map[string]InstanceMeta // by SOP Instance UID, this version's view
	objs     map[string]Instance
	changed  bool
	written  []cid.Cid
	finished bool
}

// Begin starts writing to a study. It returns ErrBusy if the study already
// has an open Tx.
func (a *Archive) Begin(studyUID string) (*Tx, error) {
	a.mu.Lock()
	if a.busy[studyUID] {
		a.mu.Unlock()
		return nil, fmt.Errorf("begin %s: %w", studyUID, ErrBusy)
	}
	a.busy[studyUID] = true
	prev := a.studies[studyUID]
	a.mu.Unlock()

	tx := &Tx{a: a, uid: studyUID, prev: prev, metas: map[string]InstanceMeta{}, objs: map[string]Instance{}}
	fail := func(err error) (*Tx, error) {
		a.release(studyUID)
		return nil, fmt.Errorf("begin %s: %w", studyUID, err)
	}
	var err error
	if prev != nil {
		tx.sealed = prev.SealedKey
		if tx.key, err = crypto.OpenStudyKey(prev.SealedKey, a.cfg.Owner.AgeIdentity()); err != nil {
			return fail(err)
		}
		for _, se := range prev.Study.Series {
			for _, in := range se.Instances {
				tx.objs[in.SOPInstanceUID] = in
				tx.metas[in.SOPInstanceUID] = prev.metaOf(se, in)
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
	// The pending marker makes the next Open sweep this write's blocks if
	// the process dies before Commit.
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
	a.mu.Unlock()
}

// metaOf rebuilds the per-instance metadata the index keeps.
func (r *record) metaOf(se Series, in Instance) InstanceMeta {
	s := r.Study
	return InstanceMeta{
		SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, SeriesInstanceUID: se.UID,
		StudyInstanceUID: s.UID, TransferSyntaxUID: in.TransferSyntaxUID,
		PatientID: s.PatientID, IssuerOfPatientID: s.Issuer, PatientName: s.PatientName,
		PatientBirthDate: s.BirthDate, PatientSex: s.Sex, StudyDate: s.StudyDate, StudyTime: s.StudyTime,
		StudyDescription: s.Description, AccessionNumber: s.Accession, Modality: se.Modality,
		BodyPartExamined: se.BodyPart, SeriesDescription: se.Description, SeriesNumber: se.Number,
		InstanceNumber: in.Number,
	}
}

// Add stores one instance's blocks. added is false when the same instance
// (same SOP Instance UID, same bytes) is already part of the study.
func (tx *Tx) Add(ctx context.Context, meta InstanceMeta, data []byte) (added bool, err error) {
	if meta.StudyInstanceUID != tx.uid {
		return false, fmt.Errorf("add %s: belongs to study %s, not %s", meta.SOPInstanceUID, meta.StudyInstanceUID, tx.uid)
	}
	sum := sha256.Sum256(data)
	tx.mu.Lock()
	if tx.finished {
		tx.mu.Unlock()
		return false, fmt.Errorf("add %s: transaction already ended", meta.SOPInstanceUID)
	}
	if old, ok := tx.objs[meta.SOPInstanceUID]; ok && old.SHA256 == sum {
		tx.mu.Unlock()
		return false, nil
	}
	tx.mu.Unlock()

	payload, compressed := data, false
	if uncompressed[meta.TransferSyntaxUID] {
		if z := tx.a.zenc.EncodeAll(data, make([]byte, 0, len(data)/2)); len(z) < len(data)*9/10 {
			payload, compressed = z, true
		}
	}
	root, written, err := tx.a.putObject(ctx, tx.key, payload)
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.written = append(tx.written, written...)
	if err != nil {
		return false, fmt.Errorf("add %s: %w", meta.SOPInstanceUID, err)
	}
	tx.objs[meta.SOPInstanceUID] = Instance{
		SOPInstanceUID: meta.SOPInstanceUID, SOPClassUID: meta.SOPClassUID,
		TransferSyntaxUID: meta.TransferSyntaxUID, Number: meta.InstanceNumber,
		Size: int64(len(data)), SHA256: sum, Root: root, Compressed: compressed,
	}
	tx.metas[meta.SOPInstanceUID] = meta
	tx.changed = true
	return true, nil
}

// Commit writes the detail manifest and study root, makes every block
// durable, then records the study in the index: the single commit point.
// A Tx that added nothing returns the study as it was (Study{} if new).
func (tx *Tx) Commit(ctx context.Context) (Study, error) {
	tx.mu.Lock()
	if tx.finished {
		tx.mu.Unlock()
		return Study{}, fmt.Errorf("commit %s: transaction already ended", tx.uid)
	}
	tx.finished = true
	tx.mu.Unlock()
	a := tx.a
	defer a.release(tx.uid)
	if !tx.changed {
		tx.dropMarker()
		if tx.prev != nil {
			return tx.prev.Study, nil
		}
		return Study{}, nil
	}
	st := tx.study()
	fail := func(err error) (Study, error) {
		tx.discard(ctx)
		return Study{}, fmt.Errorf("commit %s: %w", tx.uid, err)
	}

	// The detail manifest: everything needed to rebuild the index entry,
	// encrypted to the study key like the instances.
	detail, err := json.Marshal(st)
	if err != nil {
		return fail(err)
	}
	mroot, written, err := a.putObject(ctx, tx.key, detail)
	tx.written = append(tx.written, written...)
	if err != nil {
		return fail(err)
	}
	root := merkledag.NodeWithData(nil)
	root.SetCidBuilder(nodeBuilder)
	root.AddRawLink("m", linkTo(mroot))
	i := 0
	for _, se := range st.Series {
		for _, in := range se.Instances {
			root.AddRawLink(fmt.Sprintf("i%d", i), linkTo(in.Root))
			i++
		}
	}
	if err := a.bs.Put(ctx, root); err != nil {
		return fail(err)
	}
	tx.written = append(tx.written, root.Cid())
	st.Root = root.Cid()
	if err := a.bs.Flush(); err != nil {
		return fail(err)
	}
	rec := &record{Study: st, SealedKey: tx.sealed}
	key := a.indexKey(st.UID)
	val, err := a.sealValue(key, rec)
	if err != nil {
		return fail(err)
	}
	if err := a.db.Update(func(btx *bolt.Tx) error {
		if err := btx.Bucket(bucketStudies).Put(key, val); err != nil {
			return err
		}
		return btx.Bucket(bucketPending).Delete(tx.pending)
	}); err != nil {
		return fail(err)
	}
	a.mu.Lock()
	a.studies[st.UID] = rec
	a.mu.Unlock()
	return st, nil
}

func linkTo(c cid.Cid) *ipld.Link { return &ipld.Link{Cid: c} }

// Rollback deletes what the Tx wrote and ends it.
func (tx *Tx) Rollback() {
	tx.mu.Lock()
	if tx.finished {
		tx.mu.Unlock()
		return
	}
	tx.finished = true
	tx.mu.Unlock()
	tx.discard(context.Background())
	tx.a.release(tx.uid)
}

// discard removes the blocks this Tx wrote (fresh ciphertext, so no other
// study refers to them) and its pending marker.
func (tx *Tx) discard(ctx context.Context) {
	for _, c := range tx.written {
		tx.a.bs.DeleteBlock(ctx, c)
	}
	tx.dropMarker()
}

func (tx *Tx) dropMarker() {
	tx.a.db.Update(func(btx *bolt.Tx) error { return btx.Bucket(bucketPending).Delete(tx.pending) })
}

// study builds the index record of this version from all its instances.
func (tx *Tx) study() Study {
	var st Study
	if tx.prev != nil {
		st.Version = tx.prev.Study.Version
	}
	st.Version++
	st.UID = tx.uid
	st.StoredAt = tx.a.cfg.Now().UTC()
	series := map[string]*Series{}
	mods, parts := map[string]bool{}, map[string]bool{}
	sops := make([]string, 0, len(tx.objs))
	for sop := range tx.objs {
		sops = append(sops, sop)
	}
	sort.Strings(sops)
	for _, sop := range sops {
		m, in := tx.metas[sop], tx.objs[sop]
		if st.PatientID == "" {
			st.PatientID, st.Issuer, st.PatientName = m.PatientID, m.IssuerOfPatientID, m.PatientName
			st.BirthDate, st.Sex, st.StudyDate, st.StudyTime = m.PatientBirthDate, m.PatientSex, m.StudyDate, m.StudyTime
			st.Description, st.Accession = m.StudyDescription, m.AccessionNumber
		}
		se := series[m.SeriesInstanceUID]
		if se == nil {
			se = &Series{UID: m.SeriesInstanceUID, Number: m.SeriesNumber, Modality: m.Modality, BodyPart: m.BodyPartExamined, Description: m.SeriesDescription}
			series[m.SeriesInstanceUID] = se
		}
		se.Instances = append(se.Instances, in)
		if m.Modality != "" {
			mods[m.Modality] = true
		}
		if m.BodyPartExamined != "" {
			parts[m.BodyPartExamined] = true
		}
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
	}
	sort.Slice(st.Series, func(i, j int) bool {
		if st.Series[i].Number != st.Series[j].Number {
			return st.Series[i].Number < st.Series[j].Number
		}
		return st.Series[i].UID < st.Series[j].UID
	})
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
