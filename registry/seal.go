package registry

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

// Signature domains of invitations and of a newcomer's proof of key
// possession.
const (
	InvitationDomain = "dicomesh invitation v1"
	JoinDomain       = "dicomesh join proof v1"
	tokenPrefix      = "dmi1"
)

// ErrInvitation reports an invitation token that does not parse or verify.
var ErrInvitation = errors.New("registry: invalid invitation")

// Invitation lets one new facility join: signed by a member, single use,
// expiring.
type Invitation struct {
	Federation string
	ID         []byte   // 16 random bytes
	Inviter    string   // facility id of the member that signed it
	Addrs      []string // where the inviter listens (libp2p multiaddrs)
	Name       string   // the newcomer's expected name, if the inviter set one
	Expires    int64    // Unix ms
}

func (v *Invitation) MarshalCanonical(e *canon.Encoder) {
	e.String(1, v.Federation)
	e.Bytes(2, v.ID)
	e.String(3, v.Inviter)
	e.Strings(4, v.Addrs)
	e.String(5, v.Name)
	e.Int(6, v.Expires)
}

func (v *Invitation) UnmarshalCanonical(d *canon.Decoder) {
	v.Federation = d.String(1)
	v.ID = d.Bytes(2)
	v.Inviter = d.String(3)
	v.Addrs = d.Strings(4)
	v.Name = d.String(5)
	v.Expires = d.Int(6)
}

// NewInvitation signs an invitation to federation fed with the member
// identity id and returns its token, the text to hand to the new facility.
func NewInvitation(id *crypto.Identity, fed string, addrs []string, name string, expires time.Time, rand io.Reader) (string, error) {
	inviter, err := FacilityID(id.SignKey())
	if err != nil {
		return "", err
	}
	v := Invitation{Federation: fed, ID: make([]byte, 16), Inviter: inviter, Addrs: addrs, Name: name, Expires: expires.UnixMilli()}
	if _, err := io.ReadFull(rand, v.ID); err != nil {
		return "", err
	}
	env := crypto.SignEnvelope(id, InvitationDomain, canon.Marshal(&v))
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(canon.Marshal(env)), nil
}

// ParseInvitation decodes a token and checks its signature and that its
// inviter is the signing key's facility. Whether the inviter is a member,
// whether the invitation expired or was used, is for the state machine.
// It returns the invitation and the signed bytes AdmitFacility carries.
func ParseInvitation(token string) (Invitation, []byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(token), tokenPrefix)
	if !ok || len(b64) > 8192 {
		return Invitation{}, nil, fmt.Errorf("%w: not a dicomesh invitation token", ErrInvitation)
	}
	raw, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return Invitation{}, nil, fmt.Errorf("%w: %v", ErrInvitation, err)
	}
	v, _, err := openInvitation(raw)
	return v, raw, err
}

func openInvitation(raw []byte) (Invitation, crypto.Envelope, error) {
	var env crypto.Envelope
	if err := canon.Unmarshal(raw, &env); err != nil {
		return Invitation{}, env, fmt.Errorf("%w: %v", ErrInvitation, err)
	}
	if err := env.Verify(InvitationDomain); err != nil {
		return Invitation{}, env, fmt.Errorf("%w: %v", ErrInvitation, err)
	}
	var v Invitation
	if err := canon.Unmarshal(env.Body, &v); err != nil {
		return Invitation{}, env, fmt.Errorf("%w: %v", ErrInvitation, err)
	}
	if id, err := FacilityID(env.Signer); err != nil || id != v.Inviter {
		return Invitation{}, env, fmt.Errorf("%w: not signed by its inviter", ErrInvitation)
	}
	if len(v.ID) != 16 || v.Federation == "" {
		return Invitation{}, env, fmt.Errorf("%w: no id or federation", ErrInvitation)
	}
	return v, env, nil
}

// joinProof is what a newcomer signs to prove it holds the key it joins
// with, bound to one invitation.
type joinProof struct {
	Invitation []byte
	Facility   string
}

func (p *joinProof) MarshalCanonical(e *canon.Encoder) {
	e.Bytes(1, p.Invitation)
	e.String(2, p.Facility)
}

// ProveJoin signs the newcomer's proof for an invitation id.
func ProveJoin(id *crypto.Identity, invitationID []byte) ([]byte, error) {
	fid, err := FacilityID(id.SignKey())
	if err != nil {
		return nil, err
	}
	return id.Sign(JoinDomain, canon.Marshal(&joinProof{invitationID, fid})), nil
}

func verifyJoin(pub []byte, invitationID []byte, facility string, sig []byte) bool {
	return len(pub) == 32 && crypto.Verify(pub, JoinDomain, canon.Marshal(&joinProof{invitationID, facility}), sig)
}

// Secrets are the federation secrets every member holds: the directory
// identity that opens manifest locators, and the linkage key of patient
// tokens.
type Secrets struct {
	Directory string // age X25519 identity (AGE-SECRET-KEY-1...)
	Linkage   crypto.LinkageKey
}

func (s *Secrets) MarshalCanonical(e *canon.Encoder) {
	e.String(1, s.Directory)
	e.Bytes(2, s.Linkage[:])
}

func (s *Secrets) UnmarshalCanonical(d *canon.Decoder) {
	s.Directory = d.String(1)
	b := d.Bytes(2)
	if d.Err() == nil && len(b) != len(s.Linkage) {
		d.Fail(errors.New("linkage key of the wrong size"))
		return
	}
	copy(s.Linkage[:], b)
}

// GenerateSecrets makes a new federation's secrets.
func GenerateSecrets(rand io.Reader) (Secrets, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return Secrets{}, err
	}
	s := Secrets{Directory: id.String()}
	if _, err := io.ReadFull(rand, s.Linkage[:]); err != nil {
		return Secrets{}, err
	}
	return s, nil
}

// DirectoryIdentity parses the directory identity.
func (s Secrets) DirectoryIdentity() (*age.X25519Identity, error) {
	return age.ParseX25519Identity(s.Directory)
}

// SealSecrets encrypts s to a member's recipient.
func SealSecrets(to string, s Secrets) ([]byte, error) {
	return sealTo(to, &s)
}

// OpenSecrets decrypts secrets sealed to the holder of id.
func OpenSecrets(id age.Identity, b []byte) (Secrets, error) {
	var s Secrets
	err := openWith(id, b, &s)
	return s, err
}

// Locator is what a searching physician sees of a study: sealed to the
// directory key, so that the Raft log holds no readable detail.
type Locator struct {
	StudyDate   string
	Modalities  []string
	BodyParts   []string
	Description string
	Series      uint64
	Instances   uint64
}

func (l *Locator) MarshalCanonical(e *canon.Encoder) {
	e.String(1, l.StudyDate)
	e.Strings(2, l.Modalities)
	e.Strings(3, l.BodyParts)
	e.String(4, l.Description)
	e.Uint(5, l.Series)
	e.Uint(6, l.Instances)
}

func (l *Locator) UnmarshalCanonical(d *canon.Decoder) {
	l.StudyDate = d.String(1)
	l.Modalities = d.Strings(2)
	l.BodyParts = d.Strings(3)
	l.Description = d.String(4)
	l.Series = d.Uint(5)
	l.Instances = d.Uint(6)
}

// SealLocator encrypts l to the directory recipient.
func SealLocator(directory string, l Locator) ([]byte, error) { return sealTo(directory, &l) }

// OpenLocator decrypts a manifest's locator with the directory identity.
func OpenLocator(directory age.Identity, b []byte) (Locator, error) {
	var l Locator
	err := openWith(directory, b, &l)
	return l, err
}

func sealTo(recipient string, m canon.Marshaler) ([]byte, error) {
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		return nil, err
	}
	return crypto.Seal(canon.Marshal(m), r)
}

// maxSealed bounds the plaintext of sealed secrets and locators.
const maxSealed = 1 << 20

func openWith(id age.Identity, b []byte, m canon.Unmarshaler) error {
	plain, err := crypto.Open(b, id, maxSealed)
	if err != nil {
		return err
	}
	return canon.Unmarshal(plain, m)
}
