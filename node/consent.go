package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

// ConsentInput is a patient's directive as a clerk records it.
type ConsentInput struct {
	PatientID  string    `json:"patient_id"`
	Issuer     string    `json:"issuer"`
	Permit     bool      `json:"permit"` // false: deny
	Facilities []string  `json:"facilities,omitempty"`
	Purposes   []string  `json:"purposes,omitempty"`
	Until      time.Time `json:"until,omitzero"`
}

// patientToken is the registry's name for one of this facility's patients.
func (rt *fedRuntime) patientToken(issuer, id string) (crypto.Token, error) {
	sec, err := rt.mySecrets()
	if err != nil {
		return crypto.Token{}, err
	}
	ts := crypto.PatientTokens(sec.Linkage, crypto.Patient{Issuer: issuer, ID: id})
	if len(ts) == 0 {
		return crypto.Token{}, errors.New("consent: a patient is an issuer and a patient ID")
	}
	return ts[0], nil
}

// RecordConsent records a patient's directive in the registry, under the
// patient's token, and waits until it is committed: from then on every
// owner's decision takes it into account. It returns the directive's id.
func (n *Node) RecordConsent(ctx context.Context, in ConsentInput) (string, error) {
	rt := n.runtime()
	if rt == nil {
		return "", ErrNotRunning
	}
	tok, err := rt.patientToken(in.Issuer, in.PatientID)
	if err != nil {
		return "", err
	}
	idb := make([]byte, 8)
	rand.Read(idb)
	d := consent.Directive{ID: "dir-" + hex.EncodeToString(idb), Patient: tok.String(), Effect: consent.EffectDeny,
		NotAfter: in.Until, RecordedBy: n.actor(ctx).User + "@" + n.Config.Facility, RecordedAt: time.Now()}
	if in.Permit {
		d.Effect = consent.EffectPermit
	}
	for _, f := range in.Facilities {
		id, err := rt.facilityByName(f)
		if err != nil {
			return "", err
		}
		d.Facilities = append(d.Facilities, id)
	}
	for _, p := range in.Purposes {
		d.Purposes = append(d.Purposes, consent.Purpose(strings.ToUpper(p)))
	}
	d.Normalize()
	if err := d.Validate(); err != nil {
		return "", err
	}
	if err := n.record(ctx, audit.Record{Event: audit.EventPatientRecord, Action: audit.ActionCreate, Outcome: audit.Success,
		Patient: in.Issuer + "|" + in.PatientID, Query: fmt.Sprintf("consent directive %s: %s", d.ID, d.Effect)}); err != nil {
		return "", err
	}
	return d.ID, rt.commit(ctx, registry.KindRecordConsent, &registry.ConsentRecord{Directive: d})
}

// RevokeConsent removes a directive this facility recorded.
func (n *Node) RevokeConsent(ctx context.Context, id string) error {
	rt := n.runtime()
	if rt == nil {
		return ErrNotRunning
	}
	if err := n.record(ctx, audit.Record{Event: audit.EventPatientRecord, Action: audit.ActionDelete, Outcome: audit.Success,
		Query: "consent directive " + id + " revoked"}); err != nil {
		return err
	}
	return rt.commit(ctx, registry.KindRevokeConsent, &registry.DirectiveRef{ID: id})
}

// Consents lists the directives recorded for a patient.
func (n *Node) Consents(ctx context.Context, issuer, id string) ([]consent.Directive, error) {
	rt := n.runtime()
	if rt == nil {
		return nil, ErrNotRunning
	}
	tok, err := rt.patientToken(issuer, id)
	if err != nil {
		return nil, err
	}
	if err := n.record(ctx, audit.Record{Event: audit.EventPatientRecord, Action: audit.ActionRead, Outcome: audit.Success,
		Patient: issuer + "|" + id, Query: "consent directives listed"}); err != nil {
		return nil, err
	}
	return rt.fsm.Directives(tok.String()), nil
}

// commit signs a command and applies it through the leader, waiting for
// the result; a refusal is an error.
func (rt *fedRuntime) commit(ctx context.Context, k registry.Kind, p canon.Marshaler) error {
	cmd, err := registry.Sign(rt.n.Identity, rt.federationID(), k, p, time.Now(), randReader)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := rt.submit(ctx, cmd)
	if err != nil {
		return err
	}
	return res.Err()
}

// facilityByName resolves a facility's name (or id) to its id.
func (rt *fedRuntime) facilityByName(name string) (string, error) {
	facs := rt.fsm.Facilities()
	i := slices.IndexFunc(facs, func(f registry.Facility) bool { return f.ID == name || strings.EqualFold(f.Name, name) })
	if i < 0 {
		return "", fmt.Errorf("no facility named %q in the federation", name)
	}
	return facs[i].ID, nil
}
