package registry

import (
	"bytes"
	"crypto/rand"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

var t0 = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

const fed = "fed-test"

type member struct {
	id  *crypto.Identity
	fid string
}

func newMember(t testing.TB) member {
	t.Helper()
	id, err := crypto.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fid, err := FacilityID(id.SignKey())
	if err != nil {
		t.Fatal(err)
	}
	return member{id, fid}
}

func (m member) record(t testing.TB, name string, sec Secrets) Facility {
	t.Helper()
	sealed, err := SealSecrets(m.id.Recipient().String(), sec)
	if err != nil {
		t.Fatal(err)
	}
	return Facility{ID: m.fid, Name: name, SignKey: m.id.SignKey(), Recipient: m.id.Recipient().String(),
		Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Secrets: sealed}
}

func (m member) sign(t testing.TB, k Kind, p canon.Marshaler, at time.Time) Signed {
	t.Helper()
	s, err := Sign(m.id, fed, k, p, at, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// world is a federation founded by a, with secrets sec.
type world struct {
	f     *FSM
	a     member
	sec   Secrets
	index uint64
}

func newWorld(t testing.TB) *world {
	t.Helper()
	sec, err := GenerateSecrets(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{f: New(), a: newMember(t), sec: sec}
	w.ok(t, w.a.sign(t, KindCreateFederation, &CreateFederation{Name: "Valley", Founder: w.a.record(t, "Rural", sec)}, t0))
	return w
}

func (w *world) apply(s Signed) Result {
	w.index++
	return w.f.ApplyCommand(s, w.index)
}

func (w *world) ok(t testing.TB, s Signed) {
	t.Helper()
	if r := w.apply(s); r.Code != OK || r.Duplicate {
		t.Fatalf("rejected: %+v", r)
	}
}

func (w *world) want(t testing.TB, s Signed, c Code) {
	t.Helper()
	before := w.f.State()
	r := w.apply(s)
	if r.Code != c {
		t.Fatalf("got %s (%s), want %s", r.Code, r.Reason, c)
	}
	if c != OK && !r.Duplicate {
		// A rejection changes nothing but the memory of its key.
		if a, b := facilitiesOf(before), facilitiesOf(w.f.State()); !bytes.Equal(a, b) {
			t.Fatal("a rejected command changed the facilities")
		}
	}
}

func facilitiesOf(state []byte) []byte {
	f := New()
	f.Restore(io.NopCloser(bytes.NewReader(state)))
	var b []byte
	for _, fa := range f.Facilities() {
		b = append(b, canon.Marshal(&fa)...)
	}
	return b
}

// admission has inviter sign an invitation and returns the newcomer's
// AdmitFacility payload for joiner.
func (w *world) admission(t testing.TB, inviter, joiner member, name string, expires time.Time) *AdmitFacility {
	t.Helper()
	tok, err := NewInvitation(inviter.id, fed, []string{"/ip4/127.0.0.1/tcp/4001"}, "", expires, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inv, raw, err := ParseInvitation(tok)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := ProveJoin(joiner.id, inv.ID)
	if err != nil {
		t.Fatal(err)
	}
	return &AdmitFacility{Invitation: raw, Facility: joiner.record(t, name, w.sec), Proof: proof}
}

func (w *world) admit(t testing.TB, joiner member, name string) {
	t.Helper()
	w.ok(t, w.a.sign(t, KindAdmitFacility, w.admission(t, w.a, joiner, name, t0.Add(time.Hour)), t0.Add(time.Minute)))
}

func TestCreateAndAdmit(t *testing.T) {
	w := newWorld(t)
	b := newMember(t)
	w.admit(t, b, "Regional")
	fb, ok := w.f.Facility(b.fid)
	if !ok || fb.Role != Voter || fb.Status != Active || fb.Name != "Regional" {
		t.Fatalf("admitted %+v", fb)
	}
	// The newcomer can open the secrets sealed to it.
	sec, err := OpenSecrets(b.id.AgeIdentity(), fb.Secrets)
	if err != nil || sec.Linkage != w.sec.Linkage || sec.Directory != w.sec.Directory {
		t.Fatalf("secrets: %v", err)
	}
	if id, name := w.f.Federation(); id != fed || name != "Valley" {
		t.Fatalf("federation %q %q", id, name)
	}
	// A second creation is refused.
	w.want(t, w.a.sign(t, KindCreateFederation, &CreateFederation{Name: "Other", Founder: w.a.record(t, "Rural", w.sec)}, t0), CodeConflict)
}

func TestVotersThenNonvoters(t *testing.T) {
	w := newWorld(t)
	var ms []member
	for i := range 6 {
		m := newMember(t)
		ms = append(ms, m)
		w.admit(t, m, string(rune('B'+i)))
	}
	roles := ""
	for _, f := range w.f.Facilities() {
		roles += f.Role.String()[:1]
	}
	if roles != "vvvvvnn" {
		t.Fatalf("roles %s, want five voters then non-voters", roles)
	}
	// A voter leaving promotes the earliest non-voter.
	w.ok(t, ms[0].sign(t, KindLeaveFacility, Empty{}, t0.Add(2*time.Minute)))
	if f, _ := w.f.Facility(ms[4].fid); f.Role != Voter {
		t.Fatalf("the earliest non-voter was not promoted: %+v", f)
	}
	if f, _ := w.f.Facility(ms[0].fid); f.Status != Left || f.Role != Nonvoter {
		t.Fatalf("left member %+v", f)
	}
}

func manifest(owner member, id string, version uint64, tokens ...crypto.Token) *Manifest {
	return &Manifest{ID: id, Owner: owner.fid, Version: version, Tokens: tokens, Root: "bafyroot" + id, Bytes: 100, Locator: []byte("sealed")}
}

func tok(b byte, kind crypto.TokenKind) crypto.Token {
	var t crypto.Token
	t.Kind = kind
	t.Sum[0] = b
	return t
}

// TestRejections: each negative case, one command each.
func TestRejections(t *testing.T) {
	w := newWorld(t)
	b, stranger := newMember(t), newMember(t)
	w.admit(t, b, "Regional")
	at := t0.Add(10 * time.Minute)
	w.ok(t, w.a.sign(t, KindPublishManifest, manifest(w.a, "m1", 1, tok(1, crypto.TokenID)), at))

	forged := w.a.sign(t, KindPublishManifest, manifest(w.a, "m2", 1), at)
	forged[len(forged)-1] ^= 1

	replayed := b.sign(t, KindAnnounceHolding, &ManifestRef{"m1"}, at)
	w.ok(t, replayed)

	inviteOf := func(inviter member, expires time.Time) *AdmitFacility {
		return w.admission(t, inviter, newMember(t), "New", expires)
	}
	used := inviteOf(w.a, t0.Add(time.Hour))
	w.ok(t, w.a.sign(t, KindAdmitFacility, used, at))
	reused := *used
	reused.Facility = newMember(t).record(t, "Another", w.sec)

	c := newMember(t)
	w.admit(t, c, "Tertiary")
	w.ok(t, w.a.sign(t, KindSuspendFacility, &FacilityRef{c.fid}, at))

	tests := []struct {
		name string
		cmd  Signed
		want Code
	}{
		{"forged signature", forged, CodeBadSignature},
		{"garbage", Signed("not a command"), CodeMalformed},
		{"oversized", make(Signed, MaxCommandBytes+1), CodeMalformed},
		{"unknown signer", stranger.sign(t, KindPublishManifest, manifest(stranger, "m3", 1), at), CodeUnknownSigner},
		{"wrong signer: replace by a non-owner", b.sign(t, KindReplaceManifest, &Manifest{ID: "m1", Owner: b.fid, Version: 2, Root: "x"}, at), CodeForbidden},
		{"publish for another owner", b.sign(t, KindPublishManifest, manifest(w.a, "m4", 1), at), CodeForbidden},
		{"replace skipping a version", w.a.sign(t, KindReplaceManifest, manifest(w.a, "m1", 3), at), CodeConflict},
		{"suspended member", c.sign(t, KindPublishManifest, manifest(c, "m5", 1), at), CodeInactiveSigner},
		{"expired invitation", w.a.sign(t, KindAdmitFacility, inviteOf(w.a, t0), at), CodeExpired},
		{"reused invitation", w.a.sign(t, KindAdmitFacility, &reused, at), CodeUsed},
		{"invitation from a non-member", w.a.sign(t, KindAdmitFacility, inviteOf(stranger, t0.Add(time.Hour)), at), CodeForbidden},
		{"invitation from a suspended member", w.a.sign(t, KindAdmitFacility, inviteOf(c, t0.Add(time.Hour)), at), CodeForbidden},
		{"directive naming a patient in clear", w.a.sign(t, KindRecordConsent, &ConsentRecord{consent.Directive{ID: "d1", Patient: "RURAL|MRN1", Effect: consent.EffectDeny, RecordedBy: "x"}}, at), CodeMalformed},
		{"other federation", func() Signed {
			s, _ := Sign(w.a.id, "other", KindAnnounceHolding, &ManifestRef{"m1"}, at, rand.Reader)
			return s
		}(), CodeWrongFederation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { w.want(t, tt.cmd, tt.want) })
	}

	// The replayed command returns its first result and changes nothing.
	before := w.f.State()
	r := w.apply(replayed)
	if r.Code != OK || !r.Duplicate {
		t.Fatalf("replay: %+v", r)
	}
	after := w.f.State()
	// Only the applied index moves.
	bf, af := New(), New()
	bf.Restore(io.NopCloser(bytes.NewReader(before)))
	af.Restore(io.NopCloser(bytes.NewReader(after)))
	if h1, h2 := bf.Holders("m1"), af.Holders("m1"); len(h1) != len(h2) {
		t.Fatal("a replayed command changed the state")
	}
	// A forged join proof: the newcomer's key did not sign.
	bad := w.admission(t, w.a, newMember(t), "Forged", t0.Add(time.Hour))
	bad.Proof[0] ^= 1
	w.want(t, w.a.sign(t, KindAdmitFacility, bad, at), CodeBadSignature)
}

func TestManifestLookupAndConsent(t *testing.T) {
	w := newWorld(t)
	b := newMember(t)
	w.admit(t, b, "Regional")
	id1, demo := tok(1, crypto.TokenID), tok(2, crypto.TokenDemographic)
	other := tok(9, crypto.TokenID)
	at := t0.Add(10 * time.Minute)
	w.ok(t, w.a.sign(t, KindPublishManifest, manifest(w.a, "m1", 1, id1, demo), at))
	w.ok(t, b.sign(t, KindPublishManifest, manifest(b, "m2", 1, other), at))
	w.ok(t, w.a.sign(t, KindReplaceManifest, manifest(w.a, "m1", 2, id1, demo), at))

	ms := w.f.Lookup([]crypto.Token{demo})
	if len(ms) != 1 || ms[0].Manifest.ID != "m1" || ms[0].Manifest.Version != 2 || ms[0].Linked {
		t.Fatalf("lookup %+v", ms)
	}
	// A link widens the search.
	w.ok(t, b.sign(t, KindLinkIdentities, &Link{A: id1, B: other, RecordedBy: "dr.b"}, at))
	ms = w.f.Lookup([]crypto.Token{id1})
	if len(ms) != 2 || ms[0].Manifest.ID != "m1" || ms[1].Manifest.ID != "m2" || !ms[1].Linked {
		t.Fatalf("linked lookup %+v", ms)
	}
	// Holders: the owner first.
	w.ok(t, b.sign(t, KindAnnounceHolding, &ManifestRef{"m1"}, at))
	if h := w.f.Holders("m1"); len(h) != 2 || h[0] != w.a.fid || h[1] != b.fid {
		t.Fatalf("holders %v", h)
	}
	// A holder that left or was suspended is no source.
	c := newMember(t)
	w.admit(t, c, "Tertiary")
	w.ok(t, c.sign(t, KindAnnounceHolding, &ManifestRef{"m1"}, at))
	if h := w.f.Holders("m1"); len(h) != 3 || h[0] != w.a.fid || !slices.Contains(h, c.fid) {
		t.Fatalf("holders %v, want the owner, Regional and Tertiary", h)
	}
	w.ok(t, w.a.sign(t, KindSuspendFacility, &FacilityRef{c.fid}, at))
	if h := w.f.Holders("m1"); len(h) != 2 || slices.Contains(h, c.fid) {
		t.Fatalf("holders %v: the suspended Tertiary is still one", h)
	}
	// Consent by token; only the recording facility revokes.
	d := consent.Directive{ID: "d1", Patient: id1.String(), Effect: consent.EffectDeny, RecordedBy: "clerk@Rural", RecordedAt: at}
	w.ok(t, w.a.sign(t, KindRecordConsent, &ConsentRecord{d}, at))
	if ds := w.f.Directives(id1.String()); len(ds) != 1 || ds[0].ID != "d1" {
		t.Fatalf("directives %+v", ds)
	}
	w.want(t, b.sign(t, KindRevokeConsent, &DirectiveRef{"d1"}, at), CodeForbidden)
	w.ok(t, w.a.sign(t, KindRevokeConsent, &DirectiveRef{"d1"}, at))
	if ds := w.f.Directives(id1.String()); len(ds) != 0 {
		t.Fatalf("revoked directive still there: %+v", ds)
	}
	w.ok(t, b.sign(t, KindRecordDisclosure, &Disclosure{Manifest: "m1", Recipient: b.fid, Purpose: "TREAT"}, at))
	if ds := w.f.Disclosures("m1"); len(ds) != 1 || ds[0].Time != at.UnixMilli() {
		t.Fatalf("disclosures %+v", ds)
	}
}

// TestSnapshotByteIdentical: restore then snapshot gives the same bytes, and
// two replicas that applied the same log hold the same bytes.
func TestSnapshotByteIdentical(t *testing.T) {
	w := newWorld(t)
	b := newMember(t)
	w.admit(t, b, "Regional")
	at := t0.Add(5 * time.Minute)
	var log []Signed
	log = append(log, w.a.sign(t, KindPublishManifest, manifest(w.a, "m1", 1, tok(1, crypto.TokenID)), at))
	log = append(log, b.sign(t, KindAnnounceHolding, &ManifestRef{"m1"}, at))
	log = append(log, b.sign(t, KindLinkIdentities, &Link{A: tok(3, crypto.TokenID), B: tok(1, crypto.TokenID), RecordedBy: "x"}, at))
	for _, s := range log {
		w.ok(t, s)
	}
	snap := w.f.State()
	r := New()
	if err := r.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.State(), snap) {
		t.Fatal("restore then snapshot differs")
	}
	if err := r.Restore(io.NopCloser(bytes.NewReader(append(bytes.Clone(snap), 0)))); err == nil {
		t.Fatal("a snapshot with trailing garbage restored")
	}
}

// FuzzApply: no input panics the state machine, and a rejected one leaves
// the state as it was (apart from the memory of the key of a signed one).
func FuzzApply(f *testing.F) {
	w := newWorld(f)
	b := newMember(f)
	f.Add([]byte(w.a.sign(f, KindPublishManifest, manifest(w.a, "m1", 1, tok(1, crypto.TokenID)), t0)))
	f.Add([]byte(w.a.sign(f, KindAdmitFacility, w.admission(f, w.a, b, "B", t0.Add(time.Hour)), t0)))
	f.Add([]byte{})
	base := w.f.State()
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := New()
		fsm.Restore(io.NopCloser(bytes.NewReader(base)))
		r := fsm.ApplyCommand(data, 100)
		if r.Code != OK && r.Code != CodeUnknownSigner && r.Code != CodeWrongFederation {
			// Possibly remembered key, nothing else: facilities unchanged.
			if !bytes.Equal(facilitiesOf(base), facilitiesOf(fsm.State())) {
				t.Fatal("rejected command changed the facilities")
			}
		}
	})
}
