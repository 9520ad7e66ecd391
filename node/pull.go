package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

// PullRequest is what a physician asks for.
type PullRequest struct {
	Manifest   string `json:"manifest"`
	Purpose    string `json:"purpose"`
	User       string `json:"user"`
	BreakGlass string `json:"break_glass,omitempty"`
	// LocalPatientID and LocalIssuer, if set, are the patient as this
	// facility knows them: the study is served locally under them.
	LocalPatientID string `json:"local_patient_id,omitempty"`
	LocalIssuer    string `json:"local_issuer,omitempty"`
}

// DeniedError is an owner's refusal, with its reason.
type DeniedError struct {
	Owner, Reason string
}

func (e *DeniedError) Error() string { return "denied by " + e.Owner + ": " + e.Reason }

// Pull asks the owner of a manifest for access and, once granted, fetches
// the study from every member that holds it, verifies and commits it. The
// request, the decision and the transfer are audited here; the owner audits
// its side. The holding and the disclosure are then recorded in the
// registry (through the outbox, so they survive a lost quorum).
func (n *Node) Pull(ctx context.Context, req PullRequest, progress func(blocks.Progress)) (archive.Study, error) {
	rt := n.runtime()
	if rt == nil {
		return archive.Study{}, ErrNotRunning
	}
	m, _, ok := rt.fsm.Manifest(req.Manifest)
	if !ok {
		return archive.Study{}, fmt.Errorf("manifest %s is not in the registry", req.Manifest)
	}
	owner, err := peer.Decode(m.Owner)
	if err != nil {
		return archive.Study{}, err
	}
	fed := rt.federationID()
	ctx = WithActor(ctx, audit.Actor{User: req.User, Purpose: req.Purpose})
	rec := audit.Record{Event: audit.EventBeginTransfer, Action: audit.ActionExecute, Peer: m.Owner, Purpose: req.Purpose,
		BreakGlass: req.BreakGlass, Query: "access request for manifest " + req.Manifest}
	rt.dialMembers(ctx, []peer.ID{owner})
	resp, err := access.Ask(ctx, rt.h, n.Identity, owner, access.Request{Federation: fed, User: req.User, Purpose: req.Purpose,
		Manifests: []string{req.Manifest}, BreakGlass: req.BreakGlass}, time.Now())
	if err != nil {
		rec.Outcome, rec.OutcomeDesc = audit.SeriousFailure, err.Error()
		n.record(ctx, rec)
		return archive.Study{}, fmt.Errorf("ask %s: %w", m.Owner, err)
	}
	if resp.Decision != access.Granted {
		rec.Outcome, rec.OutcomeDesc = audit.Denied, resp.Reason
		if err := n.record(ctx, rec); err != nil {
			return archive.Study{}, err
		}
		name := m.Owner
		if f, ok := rt.fsm.Facility(m.Owner); ok {
			name = f.Name
		}
		return archive.Study{}, &DeniedError{Owner: name, Reason: resp.Reason}
	}
	rec.Outcome, rec.OutcomeDesc = audit.Success, "granted: "+resp.Reason
	if resp.BreakGlass {
		rec.OutcomeDesc = "granted by break-glass: " + resp.Reason
	}
	if err := n.record(ctx, rec); err != nil {
		return archive.Study{}, err
	}
	if len(resp.Grants) != 1 || resp.Grants[0].Manifest != req.Manifest {
		return archive.Study{}, errors.New("the owner granted something else than was asked")
	}
	var sources []peer.ID
	for _, h := range rt.fsm.Holders(req.Manifest) {
		if id, err := peer.Decode(h); err == nil && id != rt.h.ID() {
			sources = append(sources, id)
		}
	}
	rt.dialMembers(ctx, sources)
	st, err := n.receive(ctx, rt.h, resp.Grants[0], archive.Origin{Facility: m.Owner, Manifest: req.Manifest,
		LocalPatientID: req.LocalPatientID, LocalIssuer: req.LocalIssuer}, sources, progress)
	if err != nil {
		return archive.Study{}, err
	}
	errs := []error{
		n.queueCommand(registry.KindAnnounceHolding, &registry.ManifestRef{ID: req.Manifest}),
		n.queueCommand(registry.KindRecordDisclosure, &registry.Disclosure{Manifest: req.Manifest, Recipient: n.FacilityID, Purpose: req.Purpose}),
	}
	rt.nudge()
	if err := errors.Join(errs...); err != nil {
		n.log.Warn("the holding and disclosure could not be queued for the registry", "err", err)
	}
	return st, nil
}
