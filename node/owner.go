package node

import (
	"context"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
)

// Directory is what the owner's side of the exchange reads from the
// federation registry.
type Directory interface {
	// Recipient is the age recipient of an active member facility.
	Recipient(facility string) (age.Recipient, error)
	// Directives are the consent directives recorded for one of this
	// facility's patients (issuer-qualified ID).
	Directives(patient string) []consent.Directive
	// Study resolves one of this facility's manifest ids to the study it
	// publishes.
	Study(manifest string) (studyUID string, err error)
}

// owner answers access requests for the facility's studies: it implements
// access.Handler.
type owner struct {
	n        *Node
	dir      Directory
	policy   consent.Policy
	grantTTL time.Duration
	now      func() time.Time
}

var _ access.Handler = (*owner)(nil)

// Decide evaluates consent for each study asked for, writes one audit
// record per study before anything is answered (no audit, no access), and
// grants only when every study is permitted: the study keys sealed to the
// requester's recipient.
func (o *owner) Decide(ctx context.Context, req access.Request, _ crypto.Envelope) (access.Response, error) {
	now := o.now()
	cr := consent.Request{Facility: req.Requester, User: req.User, Purpose: consent.Purpose(req.Purpose), Reason: req.BreakGlass, Time: time.UnixMilli(req.Time)}
	recip, err := o.dir.Recipient(req.Requester)
	if err != nil {
		return access.Response{}, fmt.Errorf("requester's recipient: %w", err)
	}
	type item struct {
		manifest string
		st       archive.Study
		dec      consent.Decision
	}
	var items []item
	for _, m := range req.Manifests {
		uid, err := o.dir.Study(m)
		if err == nil {
			var st archive.Study
			if st, err = o.n.Archive.Study(uid); err == nil {
				items = append(items, item{m, st, consent.Decide(cr, o.dir.Directives(patient(st)), o.policy)})
				continue
			}
		}
		// An unknown manifest is answered like a denial, and audited.
		if aerr := o.auditDecision(ctx, req, archive.Study{}, audit.Denied, "unknown manifest "+m); aerr != nil {
			return access.Response{}, aerr
		}
		return access.Response{Decision: access.Denied, Reason: "manifest " + m + " is not held here"}, nil
	}
	resp := access.Response{Decision: access.Granted, Expires: now.Add(o.grantTTL).UnixMilli(), Time: now.UnixMilli()}
	var denied []string
	for _, it := range items {
		out, desc := audit.Success, string(it.dec.Rule)
		switch it.dec.Outcome {
		case consent.Deny:
			out = audit.Denied
			denied = append(denied, fmt.Sprintf("%s: %s", it.manifest, describeDecision(it.dec)))
		case consent.BreakGlass:
			resp.BreakGlass = true
			desc = fmt.Sprintf("break-glass over %s", it.dec.Overridden)
		}
		if err := o.auditDecision(ctx, req, it.st, out, desc); err != nil {
			return access.Response{}, err
		}
	}
	if len(denied) > 0 {
		return access.Response{Decision: access.Denied, Reason: "consent denies " + strings.Join(denied, "; "), Time: now.UnixMilli()}, nil
	}
	for _, it := range items {
		key, err := o.n.Archive.StudyKey(it.st.UID)
		if err != nil {
			return access.Response{}, err
		}
		sealed, err := key.Seal(recip)
		if err != nil {
			return access.Response{}, err
		}
		resp.Grants = append(resp.Grants, access.Grant{Manifest: it.manifest, Root: it.st.Root.String(), SealedKey: sealed})
	}
	resp.Reason = describeDecision(items[0].dec)
	return resp, nil
}

func describeDecision(d consent.Decision) string {
	s := string(d.Rule)
	if d.Directive != "" {
		s += " (directive " + d.Directive + ")"
	}
	return s
}

// auditDecision records the owner's side of a request: a disclosure (or
// its refusal) of one study to a peer facility.
func (o *owner) auditDecision(ctx context.Context, req access.Request, st archive.Study, out audit.Outcome, desc string) error {
	r := audit.Record{
		Event: audit.EventExport, Action: audit.ActionRead, Outcome: out, OutcomeDesc: desc,
		User: req.User, Facility: req.Requester, Peer: req.Requester, Purpose: req.Purpose, BreakGlass: req.BreakGlass,
		Query: "access request for " + strings.Join(req.Manifests, ","),
	}
	if st.UID != "" {
		r.Patient, r.Study = patient(st), st.UID
	}
	if _, err := o.n.Audit.Append(ctx, r); err != nil {
		return fmt.Errorf("the decision could not be audited: %w", err)
	}
	return nil
}

// Refused audits a request refused before any decision: forged, replayed,
// stale, re-targeted or from a non-member.
func (o *owner) Refused(ctx context.Context, from peer.ID, err *access.RefusedError) {
	r := audit.Record{
		Event: audit.EventSecurityAlert, Action: audit.ActionExecute, Outcome: audit.Denied,
		OutcomeDesc: "access request refused: " + err.Code, Peer: from.String(), Query: limitString(err.Reason, 512),
	}
	if q := err.Request; q != nil {
		r.User, r.Purpose = q.User, q.Purpose
	}
	if _, aerr := o.n.Audit.Append(ctx, r); aerr != nil {
		o.n.log.Warn("cannot audit a refused access request", "code", err.Code, "err", aerr)
	}
}

func limitString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
