package registry

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

// CommandDomain is the signature domain of every registry command.
const CommandDomain = "dicomesh registry command v1"

// Limits. A command larger than MaxCommandBytes is rejected unread.
const (
	MaxCommandBytes = 1 << 20
	maxField        = 4096
	maxList         = 64
)

// Kind is what a command does.
type Kind uint8

// Command kinds.
const (
	KindCreateFederation Kind = iota + 1
	KindAdmitFacility
	KindUpdateFacility
	KindSuspendFacility
	KindLeaveFacility
	KindPublishManifest
	KindReplaceManifest
	KindRecordConsent
	KindRevokeConsent
	KindLinkIdentities
	KindAnchorAuditCheckpoint
	KindRecordDisclosure
	KindAnnounceHolding
	numKinds
)

var kindNames = [...]string{"", "CreateFederation", "AdmitFacility", "UpdateFacility", "SuspendFacility", "LeaveFacility",
	"PublishManifest", "ReplaceManifest", "RecordConsent", "RevokeConsent", "LinkIdentities", "AnchorAuditCheckpoint",
	"RecordDisclosure", "AnnounceHolding"}

func (k Kind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Command is the signed body of every change to the registry. Time is set
// by the issuer; the state machine reads no clock, so every replica applies
// a command with the same time.
type Command struct {
	Kind       Kind
	Federation string // federation id
	Signer     string // issuing facility id: the libp2p peer id of its key
	Key        []byte // idempotency key: 16 random bytes chosen by the issuer
	Time       int64  // Unix milliseconds, issuer's clock
	Payload    []byte // the canonical encoding of the kind's payload
}

// MarshalCanonical implements canon.Marshaler.
func (c *Command) MarshalCanonical(e *canon.Encoder) {
	e.Uint(1, uint64(c.Kind))
	e.String(2, c.Federation)
	e.String(3, c.Signer)
	e.Bytes(4, c.Key)
	e.Int(5, c.Time)
	e.Bytes(6, c.Payload)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (c *Command) UnmarshalCanonical(d *canon.Decoder) {
	k := d.Uint(1)
	c.Federation = d.String(2)
	c.Signer = d.String(3)
	c.Key = d.Bytes(4)
	c.Time = d.Int(5)
	c.Payload = d.Bytes(6)
	if d.Err() != nil {
		return
	}
	if k == 0 || k >= uint64(numKinds) {
		d.Fail(fmt.Errorf("unknown command kind %d", k))
	}
	c.Kind = Kind(k)
}

// Signed is a command as it travels and is stored: the canonical encoding
// of a crypto.Envelope over the Command.
type Signed []byte

// Sign builds and signs a command of kind k with payload p, issued by id at
// time now for federation fed, with an idempotency key read from rand.
func Sign(id *crypto.Identity, fed string, k Kind, p canon.Marshaler, now time.Time, rand io.Reader) (Signed, error) {
	signer, err := FacilityID(id.SignKey())
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	if _, err := io.ReadFull(rand, key); err != nil {
		return nil, err
	}
	c := Command{Kind: k, Federation: fed, Signer: signer, Key: key, Time: now.UnixMilli(), Payload: canon.Marshal(p)}
	env := crypto.SignEnvelope(id, CommandDomain, canon.Marshal(&c))
	b := canon.Marshal(env)
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("registry: %s command of %d bytes (limit %d)", k, len(b), MaxCommandBytes)
	}
	return b, nil
}

// Open decodes a signed command and checks its signature and that the
// signer field names the signing key. It does not say whether the signer
// may issue it: the state machine decides that.
func Open(s Signed) (Command, crypto.Envelope, error) {
	if len(s) > MaxCommandBytes {
		return Command{}, crypto.Envelope{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(s))
	}
	var env crypto.Envelope
	if err := canon.Unmarshal(s, &env); err != nil {
		return Command{}, env, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := env.Verify(CommandDomain); err != nil {
		return Command{}, env, err
	}
	var c Command
	if err := canon.Unmarshal(env.Body, &c); err != nil {
		return Command{}, env, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	id, err := FacilityID(env.Signer)
	if err != nil || id != c.Signer {
		return Command{}, env, fmt.Errorf("%w: signer %q is not the signing key's facility", crypto.ErrBadSignature, c.Signer)
	}
	if len(c.Key) != 16 {
		return Command{}, env, fmt.Errorf("%w: idempotency key of %d bytes", ErrMalformed, len(c.Key))
	}
	return c, env, nil
}

// FacilityID is the id of the facility with Ed25519 key pub: its libp2p
// peer id.
func FacilityID(pub ed25519.PublicKey) (string, error) {
	k, err := p2pcrypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %v", crypto.ErrBadSignature, err)
	}
	id, err := peer.IDFromPublicKey(k)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// Errors. A rejected command is not a Go error of Apply: it is a Result
// with a Code, the same on every replica. These are what clients branch on.
var (
	ErrMalformed = errors.New("registry: malformed command")
	ErrTooLarge  = errors.New("registry: command too large")
)

// Facility is a member of the federation.
type Facility struct {
	ID         string   // libp2p peer id
	Name       string   // unique within the federation
	SignKey    []byte   // Ed25519 public key
	Recipient  string   // age X25519 recipient
	Addrs      []string // libp2p multiaddrs
	Role       Role
	Status     Status
	AdmittedAt int64  // command time, Unix ms
	Secrets    []byte // the federation's secrets sealed to Recipient (SealSecrets)
	Seq        uint64 // admission order
}

// Role is a facility's part in Raft.
type Role uint8

// Roles.
const (
	Voter    Role = 1
	Nonvoter Role = 2
)

func (r Role) String() string {
	if r == Voter {
		return "voter"
	}
	return "nonvoter"
}

// Status is whether a facility takes part.
type Status uint8

// Statuses.
const (
	Active    Status = 1
	Suspended Status = 2
	Left      Status = 3
)

func (s Status) String() string {
	switch s {
	case Active:
		return "active"
	case Suspended:
		return "suspended"
	case Left:
		return "left"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// MarshalCanonical implements canon.Marshaler.
func (f *Facility) MarshalCanonical(e *canon.Encoder) {
	e.String(1, f.ID)
	e.String(2, f.Name)
	e.Bytes(3, f.SignKey)
	e.String(4, f.Recipient)
	e.Strings(5, f.Addrs)
	e.Uint(6, uint64(f.Role))
	e.Uint(7, uint64(f.Status))
	e.Int(8, f.AdmittedAt)
	e.Bytes(9, f.Secrets)
	e.Uint(10, f.Seq)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (f *Facility) UnmarshalCanonical(d *canon.Decoder) {
	f.ID = d.String(1)
	f.Name = d.String(2)
	f.SignKey = d.Bytes(3)
	f.Recipient = d.String(4)
	f.Addrs = d.Strings(5)
	f.Role = Role(min(d.Uint(6), 255))
	f.Status = Status(min(d.Uint(7), 255))
	f.AdmittedAt = d.Int(8)
	f.Secrets = d.Bytes(9)
	f.Seq = d.Uint(10)
}

// Manifest is a study's entry in the registry (DESIGN.md section 5): in the
// clear what routing needs, the rest sealed to the directory key.
type Manifest struct {
	ID        string         // stable across versions, chosen by the owner
	Owner     string         // facility id
	Version   uint64         // 1, then +1 per replacement
	Published int64          // command time, Unix ms
	Tokens    []crypto.Token // blinded patient tokens
	Root      string         // root CID of the study DAG
	Bytes     uint64         // total bytes of the study's blocks
	Locator   []byte         // SealLocator: what a searching physician sees
}

// MarshalCanonical implements canon.Marshaler.
func (m *Manifest) MarshalCanonical(e *canon.Encoder) {
	e.String(1, m.ID)
	e.String(2, m.Owner)
	e.Uint(3, m.Version)
	e.Int(4, m.Published)
	e.Messages(5, len(m.Tokens), func(i int) canon.Marshaler { return m.Tokens[i] })
	e.String(6, m.Root)
	e.Uint(7, m.Bytes)
	e.Bytes(8, m.Locator)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (m *Manifest) UnmarshalCanonical(d *canon.Decoder) {
	m.ID = d.String(1)
	m.Owner = d.String(2)
	m.Version = d.Uint(3)
	m.Published = d.Int(4)
	d.Messages(5, func(d *canon.Decoder) {
		var t crypto.Token
		t.UnmarshalCanonical(d)
		m.Tokens = append(m.Tokens, t)
	})
	m.Root = d.String(6)
	m.Bytes = d.Uint(7)
	m.Locator = d.Bytes(8)
}

// Payloads of the commands.

// CreateFederation founds the federation: the first command of the log.
type CreateFederation struct {
	Name    string
	Founder Facility // Role, Status, AdmittedAt and Seq are set by the state machine
}

func (p *CreateFederation) MarshalCanonical(e *canon.Encoder) {
	e.String(1, p.Name)
	e.Message(2, &p.Founder)
}

func (p *CreateFederation) UnmarshalCanonical(d *canon.Decoder) {
	p.Name = d.String(1)
	d.Message(2, &p.Founder)
}

// AdmitFacility admits a facility that presented an invitation to the
// member issuing the command.
type AdmitFacility struct {
	Invitation []byte   // the signed invitation (its token bytes)
	Facility   Facility // the newcomer, its Secrets sealed to its recipient
	Proof      []byte   // the newcomer's signature over JoinProof(invitation id, facility id)
}

func (p *AdmitFacility) MarshalCanonical(e *canon.Encoder) {
	e.Bytes(1, p.Invitation)
	e.Message(2, &p.Facility)
	e.Bytes(3, p.Proof)
}

func (p *AdmitFacility) UnmarshalCanonical(d *canon.Decoder) {
	p.Invitation = d.Bytes(1)
	d.Message(2, &p.Facility)
	p.Proof = d.Bytes(3)
}

// UpdateFacility changes the signer's name or addresses (empty: unchanged).
type UpdateFacility struct {
	Name  string
	Addrs []string
}

func (p *UpdateFacility) MarshalCanonical(e *canon.Encoder) {
	e.String(1, p.Name)
	e.Strings(2, p.Addrs)
}

func (p *UpdateFacility) UnmarshalCanonical(d *canon.Decoder) {
	p.Name = d.String(1)
	p.Addrs = d.Strings(2)
}

// FacilityRef names a facility: the payload of SuspendFacility.
type FacilityRef struct{ ID string }

func (p *FacilityRef) MarshalCanonical(e *canon.Encoder)   { e.String(1, p.ID) }
func (p *FacilityRef) UnmarshalCanonical(d *canon.Decoder) { p.ID = d.String(1) }

// Empty is the payload of LeaveFacility.
type Empty struct{}

func (Empty) MarshalCanonical(*canon.Encoder)    {}
func (*Empty) UnmarshalCanonical(*canon.Decoder) {}

// ManifestRef names a manifest: the payload of AnnounceHolding.
type ManifestRef struct{ ID string }

func (p *ManifestRef) MarshalCanonical(e *canon.Encoder)   { e.String(1, p.ID) }
func (p *ManifestRef) UnmarshalCanonical(d *canon.Decoder) { p.ID = d.String(1) }

// ConsentRecord is the payload of RecordConsent: a directive whose Patient
// is a patient token (crypto.Token.String()), never an identifier in clear.
type ConsentRecord struct{ Directive consent.Directive }

func (p *ConsentRecord) MarshalCanonical(e *canon.Encoder)   { e.Message(1, &p.Directive) }
func (p *ConsentRecord) UnmarshalCanonical(d *canon.Decoder) { d.Message(1, &p.Directive) }

// DirectiveRef names a directive: the payload of RevokeConsent.
type DirectiveRef struct{ ID string }

func (p *DirectiveRef) MarshalCanonical(e *canon.Encoder)   { e.String(1, p.ID) }
func (p *DirectiveRef) UnmarshalCanonical(d *canon.Decoder) { p.ID = d.String(1) }

// Link records that two patient tokens are the same person, as a person
// confirmed at the signing facility.
type Link struct {
	A, B       crypto.Token
	RecordedBy string
}

func (p *Link) MarshalCanonical(e *canon.Encoder) {
	e.Message(1, p.A)
	e.Message(2, p.B)
	e.String(3, p.RecordedBy)
}

func (p *Link) UnmarshalCanonical(d *canon.Decoder) {
	d.Message(1, &p.A)
	d.Message(2, &p.B)
	p.RecordedBy = d.String(3)
}

// Checkpoint is a facility's audit log checkpoint anchored in the registry.
type Checkpoint struct {
	Note  []byte   // the signed note (c2sp.org/tlog-checkpoint)
	Size  uint64   // tree size it signs
	Root  []byte   // root hash it signs
	Proof [][]byte // RFC 6962 consistency proof from the previous anchored checkpoint
}

func (p *Checkpoint) MarshalCanonical(e *canon.Encoder) {
	e.Bytes(1, p.Note)
	e.Uint(2, p.Size)
	e.Bytes(3, p.Root)
	e.BytesList(4, p.Proof)
}

func (p *Checkpoint) UnmarshalCanonical(d *canon.Decoder) {
	p.Note = d.Bytes(1)
	p.Size = d.Uint(2)
	p.Root = d.Bytes(3)
	p.Proof = d.BytesList(4)
}

// Disclosure records that a study was disclosed to a facility (no keys).
type Disclosure struct {
	Manifest  string
	Recipient string
	Purpose   string
	Time      int64 // command time, set by the state machine
}

func (p *Disclosure) MarshalCanonical(e *canon.Encoder) {
	e.String(1, p.Manifest)
	e.String(2, p.Recipient)
	e.String(3, p.Purpose)
	e.Int(4, p.Time)
}

func (p *Disclosure) UnmarshalCanonical(d *canon.Decoder) {
	p.Manifest = d.String(1)
	p.Recipient = d.String(2)
	p.Purpose = d.String(3)
	p.Time = d.Int(4)
}
