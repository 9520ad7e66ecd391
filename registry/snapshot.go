package registry

import (
	"cmp"
	"encoding/base64"
	"slices"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

func encodeRoot(root []byte) string { return base64.StdEncoding.EncodeToString(root) }

// The state's canonical encoding: every map written as a list sorted by its
// key, so that the same state always gives the same bytes.

type manifestEntry struct {
	m      *Manifest
	signed []byte
}

func (e *manifestEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.Message(1, e.m)
	enc.Bytes(2, e.signed)
}

type directiveEntry struct {
	d        *consent.Directive
	recorder string
}

func (e *directiveEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.Message(1, e.d)
	enc.String(2, e.recorder)
}

type checkpointEntry struct {
	facility string
	list     []Checkpoint
}

func (e *checkpointEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, e.facility)
	enc.Messages(2, len(e.list), func(i int) canon.Marshaler { return &e.list[i] })
}

type disclosureEntry struct {
	manifest string
	list     []Disclosure
}

func (e *disclosureEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, e.manifest)
	enc.Messages(2, len(e.list), func(i int) canon.Marshaler { return &e.list[i] })
}

type holdingEntry struct {
	manifest, facility string
	time               int64
}

func (e *holdingEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, e.manifest)
	enc.String(2, e.facility)
	enc.Int(3, e.time)
}

type appliedEntry struct {
	key string
	a   applied
}

func (e *appliedEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, e.key)
	enc.Int(2, e.a.time)
	enc.Message(3, &e.a.result)
}

type expiryEntry struct {
	key    string
	expiry int64
}

func (e *expiryEntry) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, e.key)
	enc.Int(2, e.expiry)
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// MarshalCanonical encodes the state.
func (s *state) MarshalCanonical(e *canon.Encoder) {
	e.String(1, s.fed)
	e.String(2, s.name)
	e.Int(3, s.lastTime)
	e.Uint(4, s.index)
	e.Uint(5, s.seq)
	fs := sortedKeys(s.facilities)
	e.Messages(6, len(fs), func(i int) canon.Marshaler { return s.facilities[fs[i]] })
	ms := sortedKeys(s.manifests)
	e.Messages(7, len(ms), func(i int) canon.Marshaler { return &manifestEntry{s.manifests[ms[i]], s.signed[ms[i]]} })
	ds := sortedKeys(s.directives)
	e.Messages(8, len(ds), func(i int) canon.Marshaler { return &directiveEntry{s.directives[ds[i]], s.recorder[ds[i]]} })
	type lk struct {
		key [2]crypto.Token
		enc string
	}
	var links []lk
	for k := range s.links {
		links = append(links, lk{k, string(canon.Marshal(k[0])) + string(canon.Marshal(k[1]))})
	}
	slices.SortFunc(links, func(a, b lk) int { return cmp.Compare(a.enc, b.enc) })
	e.Messages(9, len(links), func(i int) canon.Marshaler {
		return &Link{A: links[i].key[0], B: links[i].key[1], RecordedBy: s.links[links[i].key]}
	})
	cs := sortedKeys(s.checkpoints)
	e.Messages(10, len(cs), func(i int) canon.Marshaler { return &checkpointEntry{cs[i], s.checkpoints[cs[i]]} })
	dl := sortedKeys(s.disclosures)
	e.Messages(11, len(dl), func(i int) canon.Marshaler { return &disclosureEntry{dl[i], s.disclosures[dl[i]]} })
	var hs []holdingEntry
	for _, m := range sortedKeys(s.holders) {
		for _, f := range sortedKeys(s.holders[m]) {
			hs = append(hs, holdingEntry{m, f, s.holders[m][f]})
		}
	}
	e.Messages(12, len(hs), func(i int) canon.Marshaler { return &hs[i] })
	as := sortedKeys(s.applied)
	e.Messages(13, len(as), func(i int) canon.Marshaler { return &appliedEntry{as[i], s.applied[as[i]]} })
	is := sortedKeys(s.invitations)
	e.Messages(14, len(is), func(i int) canon.Marshaler { return &expiryEntry{is[i], s.invitations[is[i]]} })
}

// UnmarshalCanonical decodes a state and rebuilds its indexes.
func (s *state) UnmarshalCanonical(d *canon.Decoder) {
	s.fed = d.String(1)
	s.name = d.String(2)
	s.lastTime = d.Int(3)
	s.index = d.Uint(4)
	s.seq = d.Uint(5)
	d.Messages(6, func(d *canon.Decoder) {
		var f Facility
		f.UnmarshalCanonical(d)
		s.facilities[f.ID] = &f
	})
	d.Messages(7, func(d *canon.Decoder) {
		var m Manifest
		d.Message(1, &m)
		signed := d.Bytes(2)
		s.manifests[m.ID] = &m
		if len(signed) > 0 {
			s.signed[m.ID] = signed
		}
		for _, t := range m.Tokens {
			add(s.byToken, t, m.ID)
		}
	})
	d.Messages(8, func(d *canon.Decoder) {
		var dir consent.Directive
		d.Message(1, &dir)
		s.directives[dir.ID] = &dir
		s.recorder[dir.ID] = d.String(2)
		add(s.byPatient, dir.Patient, dir.ID)
	})
	d.Messages(9, func(d *canon.Decoder) {
		var l Link
		l.UnmarshalCanonical(d)
		s.links[[2]crypto.Token{l.A, l.B}] = l.RecordedBy
	})
	d.Messages(10, func(d *canon.Decoder) {
		f := d.String(1)
		var list []Checkpoint
		d.Messages(2, func(d *canon.Decoder) {
			var c Checkpoint
			c.UnmarshalCanonical(d)
			list = append(list, c)
		})
		s.checkpoints[f] = list
	})
	d.Messages(11, func(d *canon.Decoder) {
		m := d.String(1)
		var list []Disclosure
		d.Messages(2, func(d *canon.Decoder) {
			var x Disclosure
			x.UnmarshalCanonical(d)
			list = append(list, x)
		})
		s.disclosures[m] = list
	})
	d.Messages(12, func(d *canon.Decoder) {
		m, f, t := d.String(1), d.String(2), d.Int(3)
		if s.holders[m] == nil {
			s.holders[m] = map[string]int64{}
		}
		s.holders[m][f] = t
	})
	d.Messages(13, func(d *canon.Decoder) {
		k, t := d.String(1), d.Int(2)
		var r Result
		d.Message(3, &r)
		s.applied[k] = applied{t, r}
	})
	d.Messages(14, func(d *canon.Decoder) {
		k, t := d.String(1), d.Int(2)
		s.invitations[k] = t
	})
}
