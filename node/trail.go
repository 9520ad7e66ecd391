package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/user"
	"strings"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/dicomweb"
	"github.com/dicomesh/dicomesh/node/dimse"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// actorKey carries an audit.Actor in a context.
type actorKey struct{}

// WithActor returns a context that names who acts, from where and why.
// Every audit record the node writes for an operation under that context
// names them. Without one, the operating-system user of the process acts.
func WithActor(ctx context.Context, a audit.Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// actor returns the actor of ctx, completed with the defaults.
func (n *Node) actor(ctx context.Context) audit.Actor {
	a, _ := ctx.Value(actorKey{}).(audit.Actor)
	if a.User == "" {
		a.User = localUser()
	}
	if a.Facility == "" {
		a.Facility = n.FacilityID
	}
	return a
}

// localUser names the operating-system user running the process.
func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// record appends one audit record for an operation by the actor of ctx. The
// operation may proceed only if it returns nil.
func (n *Node) record(ctx context.Context, r audit.Record) error {
	a := n.actor(ctx)
	r.User, r.UserRole, r.Address = a.User, a.Role, a.Address
	if r.Facility == "" {
		r.Facility = a.Facility
	}
	if r.Purpose == "" {
		r.Purpose = a.Purpose
	}
	if _, err := n.Audit.Append(ctx, r); err != nil {
		return fmt.Errorf("refused: the audit record could not be written: %w", err)
	}
	return nil
}

// patient is the issuer-qualified patient ID of a study, as audit records
// name it locally.
func patient(st archive.Study) string { return st.Issuer + "|" + st.PatientID }

// auditImport is the archive's BeforeCommit hook: a study version becomes
// visible only once its import is on the audit log.
func (n *Node) auditImport(ctx context.Context, st archive.Study) error {
	r := audit.Record{
		Event: audit.EventImport, Action: audit.ActionCreate, Outcome: audit.Success,
		Patient: patient(st), Study: st.UID,
		Query: fmt.Sprintf("version %d, %d instances", st.Version, st.Instances),
	}
	if st.Source != "" {
		// Received from another facility: the recipient's side of the
		// disclosure.
		r.Event, r.Peer = audit.EventInstancesTransfer, st.Source
		r.Query = fmt.Sprintf("received manifest %s, version %d, %d instances", st.SourceManifest, st.Version, st.Instances)
	}
	return n.record(ctx, r)
}

// Studies searches the local archive. The query is audited first.
func (n *Node) Studies(ctx context.Context, q archive.Query) ([]archive.Study, error) {
	r := audit.Record{Event: audit.EventQuery, Action: audit.ActionExecute, Outcome: audit.Success, Query: describeQuery(q)}
	if q.PatientID != "" {
		r.Patient = q.Issuer + "|" + q.PatientID
	}
	if err := n.record(ctx, r); err != nil {
		return nil, err
	}
	return n.Archive.Studies(q)
}

// describeQuery renders an archive query for the audit record.
func describeQuery(q archive.Query) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("patient_id", q.PatientID)
	add("issuer", q.Issuer)
	add("name", q.PatientName)
	add("modality", q.Modality)
	add("from", q.DateFrom)
	add("to", q.DateTo)
	add("accession", q.Accession)
	if len(parts) == 0 {
		return "all studies"
	}
	return strings.Join(parts, " ")
}

// Export writes the original instances of a study into dir. The export is
// audited first.
func (n *Node) Export(ctx context.Context, studyUID, dir string) (int, error) {
	st, err := n.Archive.Study(studyUID)
	if err != nil {
		return 0, err
	}
	if err := n.record(ctx, audit.Record{
		Event: audit.EventExport, Action: audit.ActionRead, Outcome: audit.Success,
		Patient: patient(st), Study: st.UID, Query: "to a local folder",
	}); err != nil {
		return 0, err
	}
	return n.Archive.Export(ctx, studyUID, dir)
}

// ReadInstance returns the original bytes of one instance. The read is
// audited first.
func (n *Node) ReadInstance(ctx context.Context, studyUID, sopInstanceUID string) (io.ReadCloser, error) {
	st, err := n.Archive.Study(studyUID)
	var pre *archive.Precheck
	if errors.Is(err, archive.ErrNotFound) {
		// Being pulled: the instances already checked can be read.
		var ok bool
		if st, pre, ok = n.receivingStudy(studyUID); ok {
			err = nil
		}
	}
	if err != nil {
		return nil, err
	}
	what := "instance " + sopInstanceUID
	if pre != nil {
		what += " of a study being received"
	}
	if err := n.record(ctx, audit.Record{
		Event: audit.EventInstancesAccessed, Action: audit.ActionRead, Outcome: audit.Success,
		Patient: patient(st), Study: st.UID, Query: what,
	}); err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	if pre != nil {
		rc, err = pre.ReadInstance(ctx, sopInstanceUID)
	} else {
		rc, err = n.Archive.ReadInstance(ctx, studyUID, sopInstanceUID)
	}
	if err != nil || st.Source == "" || st.LocalPatientID == "" {
		return rc, err
	}
	// A received study is served under the local patient (import
	// reconciliation); the stored ciphertext stays as it arrived.
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	out, err := ingest.Coerce(b, ingest.Coercion{PatientID: st.LocalPatientID, Issuer: st.LocalIssuer,
		Source: n.facilityName(st.Source), System: "dicomesh " + n.Config.Facility})
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}

// facilityName names a member facility as the registry does, or by id.
func (n *Node) facilityName(id string) string {
	if rt := n.runtime(); rt != nil {
		if f, ok := rt.fsm.Facility(id); ok {
			return f.Name
		}
	}
	return id
}

// Study returns one study with its series and instances. The read is
// audited first.
func (n *Node) Study(ctx context.Context, uid string) (archive.Study, error) {
	st, err := n.Archive.Study(uid)
	what := "study details"
	if errors.Is(err, archive.ErrNotFound) {
		// Being pulled: what was checked so far.
		if rst, _, ok := n.receivingStudy(uid); ok {
			st, err, what = rst, nil, "study details, being received"
		}
	}
	if err != nil {
		return archive.Study{}, err
	}
	if err := n.record(ctx, audit.Record{Event: audit.EventQuery, Action: audit.ActionRead, Outcome: audit.Success,
		Patient: patient(st), Study: st.UID, Query: what}); err != nil {
		return archive.Study{}, err
	}
	return st, nil
}

// Store commits instances of one study received over a network interface
// (dimse.Store: a C-STORE without the spool sends one instance): one
// archive transaction, audited as an import, then queued for publication.
// STOW-RS stores through BeginStore, as the instances arrive.
func (n *Node) Store(ctx context.Context, study string, metas []archive.InstanceMeta, data [][]byte) error {
	w, err := n.BeginStore(ctx, study, true)
	if err != nil {
		return err
	}
	for i := range metas {
		if err := w.Add(ctx, metas[i], data[i]); err != nil {
			w.Rollback()
			return err
		}
	}
	return w.Commit(ctx)
}

// BeginStore starts storing the instances of one study received over a
// network interface as they arrive (dicomweb.Store): the Commit is audited
// as an import and queues the study for publication.
func (n *Node) BeginStore(ctx context.Context, study string, wait bool) (dicomweb.StudyWriter, error) {
	var tx *archive.Tx
	var err error
	if wait {
		tx, err = n.Archive.BeginWait(ctx, study)
	} else {
		tx, err = n.Archive.Begin(study)
	}
	if err != nil {
		return nil, err
	}
	return studyWriter{n, tx}, nil
}

// studyWriter is an archive transaction whose commit queues publication.
type studyWriter struct {
	n  *Node
	tx *archive.Tx
}

func (w studyWriter) Add(ctx context.Context, m archive.InstanceMeta, data []byte) error {
	_, err := w.tx.Add(ctx, m, data)
	return err
}

func (w studyWriter) Commit(ctx context.Context) error {
	st, err := w.tx.Commit(ctx)
	if err != nil {
		return err
	}
	if st.UID != "" {
		return w.n.queuePublish([]archive.Study{st})
	}
	return nil
}

func (w studyWriter) Rollback() { w.tx.Rollback() }

// Push sends a study to a DICOM destination (the local PACS) by C-STORE:
// each instance as the node serves it locally (a received study under the
// local patient). The export is audited first.
func (n *Node) Push(ctx context.Context, studyUID string, dest dimse.Destination) (dimse.SendResult, error) {
	st, err := n.Archive.Study(studyUID)
	if err != nil {
		return dimse.SendResult{}, err
	}
	if dest.CallingAET == "" {
		dest.CallingAET = n.Config.AET
	}
	if err := n.record(ctx, audit.Record{Event: audit.EventExport, Action: audit.ActionRead, Outcome: audit.Success,
		Patient: patient(st), Study: st.UID, Peer: "dicom:" + dest.AET, Query: fmt.Sprintf("C-STORE to %s at %s:%d", dest.AET, dest.Host, dest.Port)}); err != nil {
		return dimse.SendResult{}, err
	}
	var objs []dimse.Object
	for _, se := range st.Series {
		for _, in := range se.Instances {
			rc, err := n.ReadInstance(ctx, st.UID, in.SOPInstanceUID)
			if err != nil {
				return dimse.SendResult{}, err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return dimse.SendResult{}, err
			}
			objs = append(objs, dimse.Object{Data: b})
		}
	}
	return dimse.Send(ctx, dest, objs)
}
