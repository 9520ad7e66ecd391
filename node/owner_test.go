package node

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/node/audit"
)

// fakeDirectory stands in for the registry: one requester, one manifest.
type fakeDirectory struct {
	recipient  age.Recipient
	directives []consent.Directive
	studies    map[string]string
}

func (d *fakeDirectory) Recipient(string) (age.Recipient, error) { return d.recipient, nil }
func (d *fakeDirectory) Directives(string) []consent.Directive   { return d.directives }
func (d *fakeDirectory) Study(m string) (string, error) {
	if uid, ok := d.studies[m]; ok {
		return uid, nil
	}
	return "", errors.New("unknown")
}

func TestOwnerDecides(t *testing.T) {
	n := openTestNode(t)
	ctx := context.Background()
	rep, err := n.Ingest(ctx, nil, writeStudy(t, "cr"))
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Studies[0]
	requester, _ := crypto.GenerateIdentity(rand.Reader)
	dir := &fakeDirectory{recipient: requester.Recipient(), studies: map[string]string{"m1": st.UID}}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	o := &owner{n: n, dir: dir, policy: consent.DefaultPolicy(), grantTTL: time.Hour, now: func() time.Time { return now }}
	req := access.Request{Federation: "f", Requester: "12D3KooWRequester", Owner: n.FacilityID, User: "dr.b",
		Purpose: "TREAT", Manifests: []string{"m1"}, Nonce: make([]byte, 16), Time: now.UnixMilli()}

	// Opt-out: granted, and the key opens the study.
	resp, err := o.Decide(ctx, req, crypto.Envelope{})
	if err != nil || resp.Decision != access.Granted || len(resp.Grants) != 1 || resp.Grants[0].Root != st.Root.String() {
		t.Fatalf("%+v %v", resp, err)
	}
	if _, err := crypto.OpenStudyKey(resp.Grants[0].SealedKey, requester.AgeIdentity()); err != nil {
		t.Fatalf("granted key does not open for the requester: %v", err)
	}

	// The patient's directive denies: denied, with the rule.
	deny := consent.Directive{ID: "d1", Patient: patient(st), Effect: consent.EffectDeny, RecordedBy: "clerk", RecordedAt: now.Add(-time.Hour)}
	dir.directives = []consent.Directive{deny}
	resp, err = o.Decide(ctx, req, crypto.Envelope{})
	if err != nil || resp.Decision != access.Denied || len(resp.Grants) != 0 || !strings.Contains(resp.Reason, "directive-deny") {
		t.Fatalf("%+v %v", resp, err)
	}

	// Break-glass for an emergency overrides it, flagged.
	eg := req
	eg.Purpose, eg.BreakGlass = "ETREAT", "unconscious, trauma bay"
	resp, err = o.Decide(ctx, eg, crypto.Envelope{})
	if err != nil || resp.Decision != access.Granted || !resp.BreakGlass {
		t.Fatalf("%+v %v", resp, err)
	}

	// An unknown manifest is denied.
	unk := req
	unk.Manifests = []string{"m9"}
	if resp, _ := o.Decide(ctx, unk, crypto.Envelope{}); resp.Decision != access.Denied {
		t.Fatalf("unknown manifest: %+v", resp)
	}

	recs, err := n.Audit.Search(ctx, audit.Actor{User: "officer"}, audit.Query{Facility: "12D3KooWRequester"})
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, r := range recs {
		outcomes = append(outcomes, r.Outcome.String()+":"+r.BreakGlass)
	}
	if got := strings.Join(outcomes, " "); got != "success: denied: success:unconscious, trauma bay denied:" {
		t.Fatalf("audit trail %q", got)
	}

	// Without an audit log, nothing is decided.
	n.Audit.Close()
	if _, err := o.Decide(ctx, req, crypto.Envelope{}); err == nil {
		t.Fatal("decided without an audit record")
	}
}
