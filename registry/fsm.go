package registry

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/hashicorp/raft"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

// MaxVoters is how many facilities vote in Raft; the others replicate.
const MaxVoters = 5

// Rules of the state machine that depend on command times.
const (
	// appliedWindow is how long an idempotency key is remembered, in
	// command time: a retry must come within it.
	appliedWindow = 24 * 3600 * 1000
	// maxCheckpoints is how many anchored checkpoints are kept per facility.
	maxCheckpoints = 64
	maxLocator     = 64 << 10
)

// Code says how a command fared. Every replica computes the same one.
type Code uint8

// Codes.
const (
	OK                  Code = iota
	CodeMalformed            // does not decode or breaks a rule of form
	CodeBadSignature         // the signature does not verify
	CodeWrongFederation      // for another federation, or no federation yet
	CodeUnknownSigner        // the signer is not a member
	CodeInactiveSigner       // the signer is suspended or left
	CodeForbidden            // the signer may not do this
	CodeConflict             // the state does not allow it (exists, wrong version, ...)
	CodeNotFound             // what it refers to does not exist
	CodeExpired              // the invitation expired
	CodeUsed                 // the invitation was used
)

var codeNames = [...]string{"ok", "malformed", "bad-signature", "wrong-federation", "unknown-signer", "inactive-signer",
	"forbidden", "conflict", "not-found", "expired", "used"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Result is what applying a command returned: the value of raft's
// ApplyFuture.Response().
type Result struct {
	Code      Code
	Reason    string
	Duplicate bool   // the idempotency key was applied before; this is its result
	Index     uint64 // the log index of the command that produced the result
}

// Err returns nil for OK and a *RejectedError otherwise.
func (r Result) Err() error {
	if r.Code == OK {
		return nil
	}
	return &RejectedError{Code: r.Code, Reason: r.Reason}
}

// RejectedError is a command the state machine refused.
type RejectedError struct {
	Code   Code
	Reason string
}

func (e *RejectedError) Error() string {
	return "registry: rejected (" + e.Code.String() + "): " + e.Reason
}

func (r *Result) MarshalCanonical(e *canon.Encoder) {
	e.Uint(1, uint64(r.Code))
	e.String(2, r.Reason)
	e.Bool(3, r.Duplicate)
	e.Uint(4, r.Index)
}

func (r *Result) UnmarshalCanonical(d *canon.Decoder) {
	r.Code = Code(min(d.Uint(1), 255))
	r.Reason = d.String(2)
	r.Duplicate = d.Bool(3)
	r.Index = d.Uint(4)
}

// FSM is the registry's replicated state machine (raft.FSM). It verifies
// every command's signature against the facility keys in its own state,
// applies each idempotency key once, reads no clock and no randomness, and
// keeps its output independent of map order. Queries are safe for
// concurrent use with Apply.
type FSM struct {
	mu sync.RWMutex
	st state
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty state machine.
func New() *FSM {
	return &FSM{st: newState()}
}

type applied struct {
	time   int64
	result Result
}

type state struct {
	fed, name   string
	lastTime    int64
	index       uint64
	seq         uint64
	facilities  map[string]*Facility
	manifests   map[string]*Manifest
	signed      map[string][]byte // manifest id -> the signed command of its version
	directives  map[string]*consent.Directive
	recorder    map[string]string // directive id -> facility that recorded it
	links       map[[2]crypto.Token]string
	checkpoints map[string][]Checkpoint
	disclosures map[string][]Disclosure
	holders     map[string]map[string]int64
	applied     map[string]applied
	invitations map[string]int64 // used invitation id (hex) -> expiry

	byToken   map[crypto.Token]map[string]bool
	byPatient map[string]map[string]bool // patient token text -> directive ids
}

func newState() state {
	return state{
		facilities: map[string]*Facility{}, manifests: map[string]*Manifest{}, signed: map[string][]byte{},
		directives: map[string]*consent.Directive{}, recorder: map[string]string{}, links: map[[2]crypto.Token]string{},
		checkpoints: map[string][]Checkpoint{}, disclosures: map[string][]Disclosure{}, holders: map[string]map[string]int64{},
		applied: map[string]applied{}, invitations: map[string]int64{},
		byToken: map[crypto.Token]map[string]bool{}, byPatient: map[string]map[string]bool{},
	}
}

// Apply applies one log entry and returns its Result (raft.FSM).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.apply(l.Data, l.Index)
	r.Index = l.Index
	if l.Index > f.st.index {
		f.st.index = l.Index
	}
	return r
}

// ApplyCommand applies a signed command outside Raft: for tests and tools
// that replay a log. index is the log index it would have.
func (f *FSM) ApplyCommand(s Signed, index uint64) Result {
	return f.Apply(&raft.Log{Type: raft.LogCommand, Index: index, Data: s}).(Result)
}

func reject(c Code, format string, args ...any) Result {
	return Result{Code: c, Reason: fmt.Sprintf(format, args...)}
}

func (s *state) apply(data []byte, index uint64) Result {
	c, env, err := Open(data)
	if err != nil {
		if strings.Contains(err.Error(), crypto.ErrBadSignature.Error()) {
			return reject(CodeBadSignature, "%v", err)
		}
		return reject(CodeMalformed, "%v", err)
	}
	switch {
	case s.fed == "" && c.Kind != KindCreateFederation:
		return reject(CodeWrongFederation, "no federation yet")
	case s.fed != "" && c.Federation != s.fed:
		return reject(CodeWrongFederation, "command for federation %q", c.Federation)
	}
	key := c.Signer + "/" + hex.EncodeToString(c.Key)
	if a, ok := s.applied[key]; ok {
		r := a.result
		r.Duplicate = true
		return r
	}
	var r Result
	if c.Kind == KindCreateFederation {
		r = s.create(c, env)
	} else if f, ok := s.facilities[c.Signer]; !ok {
		r = reject(CodeUnknownSigner, "facility %s is not a member", c.Signer)
	} else if !bytes.Equal(f.SignKey, env.Signer) {
		r = reject(CodeBadSignature, "not signed with the key of %s", c.Signer)
	} else if f.Status != Active {
		r = reject(CodeInactiveSigner, "facility %s is %s", c.Signer, f.Status)
	} else {
		r = s.dispatch(c, f)
		if r.Code == OK && (c.Kind == KindPublishManifest || c.Kind == KindReplaceManifest) {
			var m Manifest
			canon.Unmarshal(c.Payload, &m)
			s.signed[m.ID] = data
		}
	}
	r.Index = index
	// Only commands from known signers are remembered, so that strangers
	// cannot fill the table.
	if r.Code != CodeUnknownSigner && r.Code != CodeWrongFederation {
		s.applied[key] = applied{c.Time, r}
	}
	if c.Time > s.lastTime {
		s.lastTime = c.Time
		for k, a := range s.applied {
			if a.time < s.lastTime-appliedWindow {
				delete(s.applied, k)
			}
		}
		for k, exp := range s.invitations {
			if exp < s.lastTime-appliedWindow {
				delete(s.invitations, k)
			}
		}
	}
	return r
}

func decode[T any, P interface {
	*T
	canon.Unmarshaler
}](c Command) (*T, Result, bool) {
	p := P(new(T))
	if err := canon.Unmarshal(c.Payload, p); err != nil {
		return nil, reject(CodeMalformed, "%s payload: %v", c.Kind, err), false
	}
	return (*T)(p), Result{}, true
}

func (s *state) dispatch(c Command, signer *Facility) Result {
	switch c.Kind {
	case KindAdmitFacility:
		p, r, ok := decode[AdmitFacility](c)
		if !ok {
			return r
		}
		return s.admit(c, p)
	case KindUpdateFacility:
		p, r, ok := decode[UpdateFacility](c)
		if !ok {
			return r
		}
		if p.Name != "" {
			if r := s.checkName(p.Name, signer.ID); r.Code != OK {
				return r
			}
			signer.Name = p.Name
		}
		if p.Addrs != nil {
			if r := checkAddrs(p.Addrs); r.Code != OK {
				return r
			}
			signer.Addrs = p.Addrs
		}
		return Result{}
	case KindSuspendFacility:
		p, r, ok := decode[FacilityRef](c)
		if !ok {
			return r
		}
		t, ok := s.facilities[p.ID]
		switch {
		case !ok:
			return reject(CodeNotFound, "facility %s", p.ID)
		case signer.Role != Voter:
			return reject(CodeForbidden, "only a voting member may suspend another")
		case t.ID == signer.ID:
			return reject(CodeForbidden, "a facility leaves, it does not suspend itself")
		case t.Status != Active:
			return reject(CodeConflict, "facility %s is %s", t.ID, t.Status)
		}
		s.retire(t, Suspended)
		return Result{}
	case KindLeaveFacility:
		if _, r, ok := decode[Empty](c); !ok {
			return r
		}
		s.retire(signer, Left)
		return Result{}
	case KindPublishManifest, KindReplaceManifest:
		p, r, ok := decode[Manifest](c)
		if !ok {
			return r
		}
		return s.publish(c, p)
	case KindRecordConsent:
		p, r, ok := decode[ConsentRecord](c)
		if !ok {
			return r
		}
		d := p.Directive
		if _, err := crypto.ParseToken(d.Patient); err != nil {
			return reject(CodeMalformed, "a directive names its patient by token: %v", err)
		}
		if _, ok := s.directives[d.ID]; ok {
			return reject(CodeConflict, "directive %s exists", d.ID)
		}
		s.directives[d.ID] = &d
		s.recorder[d.ID] = c.Signer
		add(s.byPatient, d.Patient, d.ID)
		return Result{}
	case KindRevokeConsent:
		p, r, ok := decode[DirectiveRef](c)
		if !ok {
			return r
		}
		d, ok := s.directives[p.ID]
		switch {
		case !ok:
			return reject(CodeNotFound, "directive %s", p.ID)
		case s.recorder[p.ID] != c.Signer:
			return reject(CodeForbidden, "directive %s was recorded by another facility", p.ID)
		}
		delete(s.directives, p.ID)
		delete(s.recorder, p.ID)
		remove(s.byPatient, d.Patient, p.ID)
		return Result{}
	case KindLinkIdentities:
		p, r, ok := decode[Link](c)
		if !ok {
			return r
		}
		if p.A == p.B || p.A.Kind == 0 || p.B.Kind == 0 {
			return reject(CodeMalformed, "a link needs two different tokens")
		}
		s.links[linkKey(p.A, p.B)] = limit(p.RecordedBy, maxField) + " at " + c.Signer
		return Result{}
	case KindAnchorAuditCheckpoint:
		p, r, ok := decode[Checkpoint](c)
		if !ok {
			return r
		}
		return s.anchor(signer, p)
	case KindRecordDisclosure:
		p, r, ok := decode[Disclosure](c)
		if !ok {
			return r
		}
		m, ok := s.manifests[p.Manifest]
		switch {
		case !ok:
			return reject(CodeNotFound, "manifest %s", p.Manifest)
		case s.facilities[p.Recipient] == nil:
			return reject(CodeNotFound, "facility %s", p.Recipient)
		case c.Signer != m.Owner && c.Signer != p.Recipient:
			return reject(CodeForbidden, "only the owner or the recipient records a disclosure")
		case len(p.Purpose) > maxField:
			return reject(CodeMalformed, "purpose too long")
		}
		p.Time = c.Time
		s.disclosures[p.Manifest] = append(s.disclosures[p.Manifest], *p)
		return Result{}
	case KindAnnounceHolding:
		p, r, ok := decode[ManifestRef](c)
		if !ok {
			return r
		}
		if _, ok := s.manifests[p.ID]; !ok {
			return reject(CodeNotFound, "manifest %s", p.ID)
		}
		if s.holders[p.ID] == nil {
			s.holders[p.ID] = map[string]int64{}
		}
		s.holders[p.ID][c.Signer] = c.Time
		return Result{}
	}
	return reject(CodeMalformed, "kind %s", c.Kind)
}

func linkKey(a, b crypto.Token) [2]crypto.Token {
	if bytes.Compare(canon.Marshal(a), canon.Marshal(b)) > 0 {
		a, b = b, a
	}
	return [2]crypto.Token{a, b}
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func add[K comparable](m map[K]map[string]bool, k K, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

func remove[K comparable](m map[K]map[string]bool, k K, v string) {
	delete(m[k], v)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// checkFacility checks a facility record presented for admission.
func checkFacility(f *Facility) Result {
	id, err := FacilityID(f.SignKey)
	switch {
	case err != nil || id != f.ID:
		return reject(CodeMalformed, "facility id does not match its key")
	case strings.TrimSpace(f.Name) == "" || len(f.Name) > 256:
		return reject(CodeMalformed, "facility name empty or too long")
	case len(f.Secrets) == 0 || len(f.Secrets) > maxField:
		return reject(CodeMalformed, "no sealed secrets")
	}
	if _, err := age.ParseX25519Recipient(f.Recipient); err != nil {
		return reject(CodeMalformed, "recipient: %v", err)
	}
	return checkAddrs(f.Addrs)
}

func checkAddrs(addrs []string) Result {
	if len(addrs) > maxList {
		return reject(CodeMalformed, "%d addresses", len(addrs))
	}
	for _, a := range addrs {
		if len(a) > 512 {
			return reject(CodeMalformed, "address too long")
		}
	}
	return Result{}
}

func (s *state) checkName(name, self string) Result {
	if strings.TrimSpace(name) == "" || len(name) > 256 {
		return reject(CodeMalformed, "facility name empty or too long")
	}
	for _, f := range s.facilities {
		if f.ID != self && f.Status != Left && strings.EqualFold(f.Name, name) {
			return reject(CodeConflict, "the name %q is taken", name)
		}
	}
	return Result{}
}

func (s *state) create(c Command, env crypto.Envelope) Result {
	if s.fed != "" {
		return reject(CodeConflict, "the federation exists")
	}
	p, r, ok := decode[CreateFederation](c)
	if !ok {
		return r
	}
	f := p.Founder
	switch {
	case c.Federation == "" || len(c.Federation) > 128:
		return reject(CodeMalformed, "federation id empty or too long")
	case strings.TrimSpace(p.Name) == "":
		return reject(CodeMalformed, "federation name empty")
	case f.ID != c.Signer || !bytes.Equal(f.SignKey, env.Signer):
		return reject(CodeForbidden, "the founder signs the federation's creation")
	}
	if r := checkFacility(&f); r.Code != OK {
		return r
	}
	s.fed, s.name = c.Federation, p.Name
	s.seq++
	f.Role, f.Status, f.AdmittedAt, f.Seq = Voter, Active, c.Time, s.seq
	s.facilities[f.ID] = &f
	return Result{}
}

func (s *state) admit(c Command, p *AdmitFacility) Result {
	inv, invEnv, err := openInvitation(p.Invitation)
	if err != nil {
		return reject(CodeForbidden, "%v", err)
	}
	inviter, ok := s.facilities[inv.Inviter]
	switch {
	case inv.Federation != s.fed:
		return reject(CodeWrongFederation, "invitation for federation %q", inv.Federation)
	case !ok || inviter.Status != Active || !bytes.Equal(inviter.SignKey, invEnv.Signer):
		return reject(CodeForbidden, "the invitation is not from an active member")
	case c.Time > inv.Expires:
		return reject(CodeExpired, "the invitation expired")
	case s.invitations[hex.EncodeToString(inv.ID)] != 0:
		return reject(CodeUsed, "the invitation was used")
	}
	f := p.Facility
	if r := checkFacility(&f); r.Code != OK {
		return r
	}
	if _, ok := s.facilities[f.ID]; ok {
		return reject(CodeConflict, "facility %s was admitted before", f.ID)
	}
	if inv.Name != "" && f.Name != inv.Name {
		return reject(CodeForbidden, "the invitation is for %q", inv.Name)
	}
	if r := s.checkName(f.Name, f.ID); r.Code != OK {
		return r
	}
	if !verifyJoin(f.SignKey, inv.ID, f.ID, p.Proof) {
		return reject(CodeBadSignature, "the newcomer's proof does not verify")
	}
	s.invitations[hex.EncodeToString(inv.ID)] = inv.Expires
	s.seq++
	f.Role, f.Status, f.AdmittedAt, f.Seq = Nonvoter, Active, c.Time, s.seq
	if s.activeVoters() < MaxVoters {
		f.Role = Voter
	}
	s.facilities[f.ID] = &f
	return Result{}
}

func (s *state) active() []*Facility {
	var out []*Facility
	for _, f := range s.facilities {
		if f.Status == Active {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b *Facility) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

func (s *state) activeVoters() int {
	n := 0
	for _, f := range s.facilities {
		if f.Status == Active && f.Role == Voter {
			n++
		}
	}
	return n
}

// retire suspends or removes a facility; a voting seat it frees goes to the
// earliest admitted active non-voter.
func (s *state) retire(f *Facility, st Status) {
	wasVoter := f.Role == Voter
	f.Status, f.Role = st, Nonvoter
	if !wasVoter {
		return
	}
	for _, g := range s.active() {
		if g.Role == Nonvoter {
			g.Role = Voter
			return
		}
	}
}

func (s *state) publish(c Command, m *Manifest) Result {
	switch {
	case m.Owner != c.Signer:
		return reject(CodeForbidden, "a facility publishes only its own studies")
	case m.ID == "" || len(m.ID) > 128 || m.Root == "" || len(m.Root) > 256:
		return reject(CodeMalformed, "manifest id or root missing or too long")
	case len(m.Tokens) > maxList || len(m.Locator) > maxLocator:
		return reject(CodeMalformed, "too many tokens or locator too large")
	}
	for _, t := range m.Tokens {
		if t.Kind == 0 {
			return reject(CodeMalformed, "invalid token")
		}
	}
	cur, exists := s.manifests[m.ID]
	if c.Kind == KindPublishManifest {
		if exists {
			return reject(CodeConflict, "manifest %s exists", m.ID)
		}
		if m.Version != 1 {
			return reject(CodeMalformed, "a new manifest is version 1")
		}
	} else {
		switch {
		case !exists:
			return reject(CodeNotFound, "manifest %s", m.ID)
		case cur.Owner != c.Signer:
			return reject(CodeForbidden, "manifest %s belongs to another facility", m.ID)
		case m.Version != cur.Version+1:
			return reject(CodeConflict, "manifest %s is at version %d, not %d", m.ID, cur.Version, m.Version-1)
		}
		for _, t := range cur.Tokens {
			remove(s.byToken, t, m.ID)
		}
	}
	m.Published = c.Time
	s.manifests[m.ID] = m
	for _, t := range m.Tokens {
		add(s.byToken, t, m.ID)
	}
	return Result{}
}

// AuditOrigin is the checkpoint origin (and note key name) of a facility's
// audit log.
func AuditOrigin(facility string) string { return "dicomesh/audit/" + facility }

func (s *state) anchor(f *Facility, p *Checkpoint) Result {
	vkey, err := note.NewEd25519VerifierKey(AuditOrigin(f.ID), ed25519.PublicKey(f.SignKey))
	if err != nil {
		return reject(CodeMalformed, "%v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return reject(CodeMalformed, "%v", err)
	}
	n, err := note.Open(p.Note, note.VerifierList(v))
	if err != nil {
		return reject(CodeBadSignature, "checkpoint note: %v", err)
	}
	want := fmt.Sprintf("%s\n%d\n%s\n", AuditOrigin(f.ID), p.Size, encodeRoot(p.Root))
	if !strings.HasPrefix(n.Text, want) || len(p.Root) != 32 {
		return reject(CodeMalformed, "the note does not sign this size and root")
	}
	hist := s.checkpoints[f.ID]
	if len(hist) > 0 {
		prev := hist[len(hist)-1]
		switch {
		case p.Size < prev.Size:
			return reject(CodeConflict, "checkpoint of size %d after one of size %d: the log shrank", p.Size, prev.Size)
		case p.Size == prev.Size && !bytes.Equal(p.Root, prev.Root):
			return reject(CodeConflict, "two checkpoints of size %d with different roots: the log forked", p.Size)
		case p.Size == prev.Size:
			return Result{}
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, p.Size, p.Proof, prev.Root, p.Root); err != nil {
			return reject(CodeConflict, "checkpoint does not extend the previous one: %v", err)
		}
	}
	p.Proof = nil
	hist = append(hist, *p)
	if len(hist) > maxCheckpoints {
		hist = hist[len(hist)-maxCheckpoints:]
	}
	s.checkpoints[f.ID] = hist
	return Result{}
}

// Snapshot returns a snapshot of the state (raft.FSM).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return snapshot(canon.Marshal(&f.st)), nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}

// Restore replaces the state with a snapshot's (raft.FSM).
func (f *FSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	st := newState()
	if err := canon.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("registry: restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

// State returns the canonical encoding of the whole state: what a snapshot
// holds. Replicas that applied the same commands return the same bytes.
func (f *FSM) State() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return canon.Marshal(&f.st)
}
