package access

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

// Signature domains: a request can never pass for a response, nor either for
// anything else the facility signs.
const (
	RequestDomain  = "dicomesh access request v1"
	ResponseDomain = "dicomesh access response v1"
)

// Limits on what a request or response may carry.
const (
	MaxManifests   = 64
	MaxFieldBytes  = 1024
	MaxSealedBytes = 4096 // a study key sealed to one recipient is about 400 bytes
)

// ErrInvalid reports a message that decodes but breaks the rules: a missing
// field, too many manifests, an oversized value.
var ErrInvalid = errors.New("access: invalid message")

// Request is what a requesting facility's user asks of an owner: access to
// the studies behind some manifests, for a purpose. It travels signed by the
// requesting facility (SignRequest).
type Request struct {
	Federation string   // federation id
	Requester  string   // requesting facility id (its peer id)
	Owner      string   // the facility asked: a request aimed at one owner is refused by every other
	User       string   // who asks, as the requesting facility names them
	Purpose    string   // purpose of use (consent.Purpose), e.g. TREAT, ETREAT
	Manifests  []string // manifest ids, all owned by Owner
	Nonce      []byte   // 16 random bytes: a request is answered once
	Time       int64    // when it was made, Unix milliseconds (requester's clock)
	BreakGlass string   // reason, when the user invokes emergency access
}

// MarshalCanonical implements canon.Marshaler.
func (r *Request) MarshalCanonical(e *canon.Encoder) {
	e.String(1, r.Federation)
	e.String(2, r.Requester)
	e.String(3, r.Owner)
	e.String(4, r.User)
	e.String(5, r.Purpose)
	e.Strings(6, r.Manifests)
	e.Bytes(7, r.Nonce)
	e.Int(8, r.Time)
	e.String(9, r.BreakGlass)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (r *Request) UnmarshalCanonical(d *canon.Decoder) {
	r.Federation = d.String(1)
	r.Requester = d.String(2)
	r.Owner = d.String(3)
	r.User = d.String(4)
	r.Purpose = d.String(5)
	r.Manifests = d.Strings(6)
	r.Nonce = d.Bytes(7)
	r.Time = d.Int(8)
	r.BreakGlass = d.String(9)
}

// Validate checks the request's form, not its signature or freshness.
func (r *Request) Validate() error {
	switch {
	case r.Federation == "" || r.Requester == "" || r.Owner == "":
		return fmt.Errorf("%w: federation, requester and owner are required", ErrInvalid)
	case r.User == "" || r.Purpose == "":
		return fmt.Errorf("%w: user and purpose are required", ErrInvalid)
	case len(r.Manifests) == 0 || len(r.Manifests) > MaxManifests:
		return fmt.Errorf("%w: %d manifests (1 to %d)", ErrInvalid, len(r.Manifests), MaxManifests)
	case len(r.Nonce) != 16:
		return fmt.Errorf("%w: nonce of %d bytes, want 16", ErrInvalid, len(r.Nonce))
	case r.Time <= 0:
		return fmt.Errorf("%w: no time", ErrInvalid)
	}
	for _, s := range append([]string{r.Federation, r.Requester, r.Owner, r.User, r.Purpose, r.BreakGlass}, r.Manifests...) {
		if len(s) > MaxFieldBytes {
			return fmt.Errorf("%w: a field of %d bytes (limit %d)", ErrInvalid, len(s), MaxFieldBytes)
		}
	}
	return nil
}

// SignRequest validates r and signs it with the requesting facility's
// identity.
func SignRequest(id *crypto.Identity, r *Request) (crypto.Envelope, error) {
	if err := r.Validate(); err != nil {
		return crypto.Envelope{}, err
	}
	return crypto.SignEnvelope(id, RequestDomain, canon.Marshal(r)), nil
}

// Decision is an owner's answer.
type Decision uint8

// Decisions.
const (
	Denied Decision = iota
	Granted
)

func (d Decision) String() string {
	if d == Granted {
		return "granted"
	}
	return "denied"
}

// Grant is access to one study: its key sealed to the requester's recipient.
type Grant struct {
	Manifest  string
	Root      string // the root CID of the study DAG the key opens
	SealedKey []byte // crypto.StudyKey sealed to the requesting facility's recipient
}

// MarshalCanonical implements canon.Marshaler.
func (g *Grant) MarshalCanonical(e *canon.Encoder) {
	e.String(1, g.Manifest)
	e.String(2, g.Root)
	e.Bytes(3, g.SealedKey)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (g *Grant) UnmarshalCanonical(d *canon.Decoder) {
	g.Manifest = d.String(1)
	g.Root = d.String(2)
	g.SealedKey = d.Bytes(3)
}

// Response is the owner's signed answer to one request. It names the
// request by hash, so it cannot be replayed as the answer to another.
type Response struct {
	Request    []byte   // RequestHash of the envelope answered
	Decision   Decision // Granted or Denied
	Reason     string   // why: the consent rule that decided, or what was wrong
	BreakGlass bool     // granted by break-glass: always flagged
	Grants     []Grant  // one per manifest when granted
	Expires    int64    // Unix milliseconds after which the grant must not be used
	Time       int64    // when the owner decided, Unix milliseconds
	AuditIndex uint64   // the owner's audit record of the decision
}

// MarshalCanonical implements canon.Marshaler.
func (r *Response) MarshalCanonical(e *canon.Encoder) {
	e.Bytes(1, r.Request)
	e.Uint(2, uint64(r.Decision))
	e.String(3, r.Reason)
	e.Bool(4, r.BreakGlass)
	e.Messages(5, len(r.Grants), func(i int) canon.Marshaler { return &r.Grants[i] })
	e.Int(6, r.Expires)
	e.Int(7, r.Time)
	e.Uint(8, r.AuditIndex)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (r *Response) UnmarshalCanonical(d *canon.Decoder) {
	r.Request = d.Bytes(1)
	r.Decision = Decision(d.Uint(2))
	r.Reason = d.String(3)
	r.BreakGlass = d.Bool(4)
	d.Messages(5, func(d *canon.Decoder) {
		var g Grant
		g.UnmarshalCanonical(d)
		r.Grants = append(r.Grants, g)
	})
	r.Expires = d.Int(6)
	r.Time = d.Int(7)
	r.AuditIndex = d.Uint(8)
	if r.Decision > Granted {
		d.Fail(fmt.Errorf("%w: unknown decision %d", ErrInvalid, r.Decision))
	}
}

// Validate checks the response's form.
func (r *Response) Validate() error {
	switch {
	case len(r.Request) != sha256.Size:
		return fmt.Errorf("%w: request hash of %d bytes", ErrInvalid, len(r.Request))
	case r.Decision == Granted && len(r.Grants) == 0:
		return fmt.Errorf("%w: a grant without studies", ErrInvalid)
	case r.Decision == Denied && len(r.Grants) > 0:
		return fmt.Errorf("%w: a denial that carries keys", ErrInvalid)
	case len(r.Grants) > MaxManifests:
		return fmt.Errorf("%w: %d grants", ErrInvalid, len(r.Grants))
	case len(r.Reason) > MaxFieldBytes:
		return fmt.Errorf("%w: reason of %d bytes", ErrInvalid, len(r.Reason))
	}
	for _, g := range r.Grants {
		if g.Manifest == "" || g.Root == "" || len(g.SealedKey) == 0 || len(g.SealedKey) > MaxSealedBytes ||
			len(g.Manifest) > MaxFieldBytes || len(g.Root) > MaxFieldBytes {
			return fmt.Errorf("%w: a malformed grant", ErrInvalid)
		}
	}
	return nil
}

// RequestHash is the SHA-256 of a request envelope's canonical encoding: how
// a response names the request it answers.
func RequestHash(env crypto.Envelope) []byte {
	h := sha256.Sum256(canon.Marshal(env))
	return h[:]
}

// millis converts a time to the Unix milliseconds messages carry.
func millis(t time.Time) int64 { return t.UnixMilli() }
