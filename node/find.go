package node

import (
	"context"
	"errors"
	"strings"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

// Candidate is a study found in the federation's registry for a patient.
type Candidate struct {
	ManifestID  string   `json:"manifest_id"`
	Facility    string   `json:"facility"`
	FacilityID  string   `json:"facility_id"`
	Version     uint64   `json:"version"`
	StudyDate   string   `json:"study_date"`
	Modalities  []string `json:"modalities"`
	BodyParts   []string `json:"body_parts"`
	Description string   `json:"description"`
	Series      uint64   `json:"series"`
	Instances   uint64   `json:"instances"`
	Bytes       uint64   `json:"bytes"`
	Matched     []string `json:"matched"` // token kinds that matched: id, demo, phon
	Linked      bool     `json:"linked"`  // found through an identity link only
	Holders     int      `json:"holders"`
}

// ErrNotRunning is returned by operations that need the running node's
// registry replica.
var ErrNotRunning = errors.New("node: the node is not running (dicomesh run)")

// Find looks a patient up in the registry replica: it computes the
// patient's tokens with the federation's linkage key, finds the manifests
// carrying them (or tokens linked to them), and opens their locators. The
// search is audited first.
func (n *Node) Find(ctx context.Context, p crypto.Patient) ([]Candidate, error) {
	rt := n.runtime()
	if rt == nil {
		return nil, ErrNotRunning
	}
	sec, err := rt.mySecrets()
	if err != nil {
		return nil, err
	}
	tokens := crypto.PatientTokens(sec.Linkage, p)
	if len(tokens) == 0 {
		return nil, errors.New("find: give an issuer and patient ID, or family and given names with birth date and sex")
	}
	r := audit.Record{Event: audit.EventQuery, Action: audit.ActionExecute, Outcome: audit.Success, Query: "federation find"}
	if p.ID != "" {
		r.Patient = p.Issuer + "|" + p.ID
	} else {
		r.PatientToken = tokens[0].String()
	}
	if err := n.record(ctx, r); err != nil {
		return nil, err
	}
	dir, err := sec.DirectoryIdentity()
	if err != nil {
		return nil, err
	}
	out := []Candidate{}
	for _, m := range rt.fsm.Lookup(tokens) {
		c := Candidate{ManifestID: m.Manifest.ID, FacilityID: m.Manifest.Owner, Version: m.Manifest.Version, Bytes: m.Manifest.Bytes,
			Linked: m.Linked, Holders: len(rt.fsm.Holders(m.Manifest.ID)), Modalities: []string{}, BodyParts: []string{}}
		if f, ok := rt.fsm.Facility(m.Manifest.Owner); ok {
			c.Facility = f.Name
		}
		for _, t := range m.Matched {
			c.Matched = append(c.Matched, t.Kind.String())
		}
		if loc, err := registry.OpenLocator(dir, m.Manifest.Locator); err == nil {
			c.StudyDate, c.Description, c.Series, c.Instances = loc.StudyDate, loc.Description, loc.Series, loc.Instances
			if loc.Modalities != nil {
				c.Modalities = loc.Modalities
			}
			if loc.BodyParts != nil {
				c.BodyParts = loc.BodyParts
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// PatientFromName splits a DICOM PN (FAMILY^GIVEN) for the token functions.
func PatientFromName(pn, birthDate, sex string) crypto.Patient {
	family, given, _ := strings.Cut(pn, "^")
	given, _, _ = strings.Cut(given, "^")
	return crypto.Patient{Family: family, Given: given, BirthDate: birthDate, Sex: sex}
}
