package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
)

// Queries read the local replica: safe for concurrent use, possibly stale
// on a follower. ReadBarrier makes a read on the leader linearizable.

// Federation returns the federation's id and name ("" before creation).
func (f *FSM) Federation() (id, name string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.fed, f.st.name
}

// AppliedIndex is the log index of the last command applied.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.index
}

// Facility returns a member's record.
func (f *FSM) Facility(id string) (Facility, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fa, ok := f.st.facilities[id]
	if !ok {
		return Facility{}, false
	}
	return *fa, true
}

// Facilities returns every facility ever admitted, in admission order.
func (f *FSM) Facilities() []Facility {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Facility, 0, len(f.st.facilities))
	for _, fa := range f.st.facilities {
		out = append(out, *fa)
	}
	slices.SortFunc(out, func(a, b Facility) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// Manifest returns a manifest's current version and the signed command
// that published it.
func (f *FSM) Manifest(id string) (Manifest, Signed, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.st.manifests[id]
	if !ok {
		return Manifest{}, nil, false
	}
	return *m, f.st.signed[id], true
}

// ManifestsByOwner returns a facility's manifests, by id.
func (f *FSM) ManifestsByOwner(owner string) []Manifest {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Manifest
	for _, id := range sortedKeys(f.st.manifests) {
		if m := f.st.manifests[id]; m.Owner == owner {
			out = append(out, *m)
		}
	}
	return out
}

// Match is a manifest found by Lookup and the tokens that found it.
type Match struct {
	Manifest Manifest
	Matched  []crypto.Token // of the searched tokens and their links, those the manifest carries
	Linked   bool           // found only through an identity link
}

// Lookup finds the manifests carrying any of tokens or of the tokens linked
// to them, most matched tokens first, then by id.
func (f *FSM) Lookup(tokens []crypto.Token) []Match {
	f.mu.RLock()
	defer f.mu.RUnlock()
	direct := map[crypto.Token]bool{}
	for _, t := range tokens {
		direct[t] = true
	}
	all := map[crypto.Token]bool{}
	for t := range direct {
		all[t] = true
	}
	for k := range f.st.links {
		if direct[k[0]] {
			all[k[1]] = true
		}
		if direct[k[1]] {
			all[k[0]] = true
		}
	}
	found := map[string]*Match{}
	for t := range all {
		for id := range f.st.byToken[t] {
			m := found[id]
			if m == nil {
				m = &Match{Manifest: *f.st.manifests[id], Linked: true}
				found[id] = m
			}
			m.Matched = append(m.Matched, t)
			if direct[t] {
				m.Linked = false
			}
		}
	}
	out := make([]Match, 0, len(found))
	for _, m := range found {
		slices.SortFunc(m.Matched, func(a, b crypto.Token) int { return cmp.Compare(a.String(), b.String()) })
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Match) int {
		if c := cmp.Compare(len(b.Matched), len(a.Matched)); c != 0 {
			return c
		}
		return cmp.Compare(a.Manifest.ID, b.Manifest.ID)
	})
	return out
}

// Holders returns the facilities that hold a manifest's blocks: the owner
// first, then the other active members in the order they announced it.
func (f *FSM) Holders(manifest string) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.st.manifests[manifest]
	if !ok {
		return nil
	}
	out := []string{m.Owner}
	type h struct {
		id string
		t  int64
	}
	var hs []h
	for id, t := range f.st.holders[manifest] {
		if fac := f.st.facilities[id]; id != m.Owner && fac != nil && fac.Status == Active {
			hs = append(hs, h{id, t})
		}
	}
	slices.SortFunc(hs, func(a, b h) int {
		if c := cmp.Compare(a.t, b.t); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, x := range hs {
		out = append(out, x.id)
	}
	return out
}

// Directives returns the consent directives recorded for a patient token
// (crypto.Token.String()), by id.
func (f *FSM) Directives(patientToken string) []consent.Directive {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []consent.Directive
	for _, id := range sortedKeys(f.st.byPatient[patientToken]) {
		out = append(out, *f.st.directives[id])
	}
	return out
}

// Checkpoints returns the audit checkpoints a facility anchored, oldest
// first (at most the last 64).
func (f *FSM) Checkpoints(facility string) []Checkpoint {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.st.checkpoints[facility])
}

// Disclosures returns the disclosures recorded for a manifest.
func (f *FSM) Disclosures(manifest string) []Disclosure {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.st.disclosures[manifest])
}

// ErrNotLeader is returned by ReadBarrier on a node that is not the leader.
var ErrNotLeader = errors.New("registry: not the leader")

// ReadBarrier makes the next read of the FSM of r linearizable: it appends a
// barrier to the log and waits until the barrier is committed (by a quorum
// that still follows r) and everything before it is applied to the FSM. A write
// acknowledged before ReadBarrier was called is visible to the read. On
// another member it returns ErrNotLeader: forward the read to the leader.
func ReadBarrier(ctx context.Context, r *raft.Raft) error {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := ctx.Err(); err != nil || timeout <= 0 {
		// raft.Barrier treats a timeout of zero as none at all.
		return cmp.Or(err, context.DeadlineExceeded)
	}
	if err := r.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		return fmt.Errorf("registry: read barrier: %w", err)
	}
	return nil
}
