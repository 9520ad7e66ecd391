package access

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
)

// Refusal codes: why a request was refused before any consent decision.
const (
	CodeMalformed    = "malformed"     // the message does not decode or breaks the rules
	CodeBadSignature = "bad-signature" // the signature does not verify
	CodeImpostor     = "impostor"      // signed by another facility than the peer that sent it
	CodeNotMember    = "not-member"    // the requester is not an active member
	CodeWrongTarget  = "wrong-target"  // meant for another owner or another federation
	CodeStale        = "stale"         // made too long ago, or in the future
	CodeReplayed     = "replayed"      // the same nonce was seen before
	CodeBusy         = "busy"          // too many recent requests to remember
)

// RefusedError is a request refused by a check. Request is the decoded
// request when there is one.
type RefusedError struct {
	Code    string
	Reason  string
	Request *Request
}

func (e *RefusedError) Error() string { return "access: request refused (" + e.Code + "): " + e.Reason }

// CheckConfig says what the owner accepts.
type CheckConfig struct {
	Federation string
	Self       string // this facility's id
	// Member reports whether a facility id is an active member.
	Member func(id string) bool
	// Window is how far a request's time may be from the owner's clock.
	// Nonces are remembered for twice as long.
	Window time.Duration
	// MaxNonces bounds the nonces remembered; past it, new requests are
	// refused (busy) rather than risk accepting a replay.
	MaxNonces int
	Now       func() time.Time
}

// DefaultCheckConfig returns a window of two minutes and room for a million
// nonces; Federation, Self and Member must be set.
func DefaultCheckConfig() CheckConfig {
	return CheckConfig{Window: 2 * time.Minute, MaxNonces: 1 << 20, Now: time.Now}
}

// Validate reports whether c is usable.
func (c CheckConfig) Validate() error {
	if c.Federation == "" || c.Self == "" || c.Member == nil || c.Window <= 0 || c.MaxNonces <= 0 || c.Now == nil {
		return errors.New("access: check config needs federation, self, member, a window, a nonce bound and a clock")
	}
	return nil
}

// Checker verifies requests as their owner receives them: form, signature,
// sender, membership, target, freshness and replay. It is safe for
// concurrent use.
type Checker struct {
	cfg CheckConfig

	mu     sync.Mutex
	nonces map[string]time.Time // requester+nonce -> forget after
}

// NewChecker returns a Checker for cfg.
func NewChecker(cfg CheckConfig) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Checker{cfg: cfg, nonces: map[string]time.Time{}}, nil
}

// Check verifies env, received from peer from, and returns the request.
// Every failure is a *RefusedError. A request that passes is remembered, so
// the same request is refused as replayed the next time.
func (c *Checker) Check(env crypto.Envelope, from peer.ID) (Request, error) {
	refuse := func(code string, req *Request, format string, args ...any) (Request, error) {
		return Request{}, &RefusedError{Code: code, Reason: fmt.Sprintf(format, args...), Request: req}
	}
	if err := env.Verify(RequestDomain); err != nil {
		return refuse(CodeBadSignature, nil, "%v", err)
	}
	signer, err := peerOf(env.Signer)
	if err != nil || signer != from {
		return refuse(CodeImpostor, nil, "signed by %s, sent by %s", signer, from)
	}
	var req Request
	if err := canon.Unmarshal(env.Body, &req); err != nil {
		return refuse(CodeMalformed, nil, "%v", err)
	}
	if err := req.Validate(); err != nil {
		return refuse(CodeMalformed, &req, "%v", err)
	}
	switch {
	case req.Requester != signer.String():
		return refuse(CodeMalformed, &req, "names requester %s but is signed by %s", req.Requester, signer)
	case req.Federation != c.cfg.Federation:
		return refuse(CodeWrongTarget, &req, "for federation %s", req.Federation)
	case req.Owner != c.cfg.Self:
		return refuse(CodeWrongTarget, &req, "addressed to facility %s", req.Owner)
	case !c.cfg.Member(req.Requester):
		return refuse(CodeNotMember, &req, "facility %s is not an active member", req.Requester)
	}
	now := c.cfg.Now()
	at := time.UnixMilli(req.Time)
	if d := now.Sub(at); d > c.cfg.Window || d < -c.cfg.Window {
		return refuse(CodeStale, &req, "made at %s, %s from the owner's clock (window %s)", at.UTC().Format(time.RFC3339), d.Round(time.Second), c.cfg.Window)
	}
	key := req.Requester + "\x00" + string(req.Nonce)
	c.mu.Lock()
	defer c.mu.Unlock()
	if until, ok := c.nonces[key]; ok && now.Before(until) {
		return refuse(CodeReplayed, &req, "nonce already used")
	}
	if len(c.nonces) >= c.cfg.MaxNonces {
		for k, until := range c.nonces {
			if !now.Before(until) {
				delete(c.nonces, k)
			}
		}
		if len(c.nonces) >= c.cfg.MaxNonces {
			return refuse(CodeBusy, &req, "too many recent requests")
		}
	}
	// A request older than the window is refused as stale, so a nonce
	// need only be remembered until its request leaves the window.
	c.nonces[key] = at.Add(c.cfg.Window + time.Second)
	return req, nil
}

// VerifyResponse checks an owner's response to the request env: signed in
// the response domain by the owner, naming env, well formed, and, if
// granted, not expired at now.
func VerifyResponse(resp crypto.Envelope, owner peer.ID, env crypto.Envelope, now time.Time) (Response, error) {
	if err := resp.Verify(ResponseDomain); err != nil {
		return Response{}, err
	}
	if signer, err := peerOf(resp.Signer); err != nil || signer != owner {
		return Response{}, fmt.Errorf("access: response signed by %s, not by the owner %s: %w", signer, owner, crypto.ErrBadSignature)
	}
	var r Response
	if err := canon.Unmarshal(resp.Body, &r); err != nil {
		return Response{}, fmt.Errorf("access: response: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Response{}, err
	}
	if !bytes.Equal(r.Request, RequestHash(env)) {
		return Response{}, fmt.Errorf("%w: the response answers another request", ErrInvalid)
	}
	if r.Decision == Granted && !now.Before(time.UnixMilli(r.Expires)) {
		return Response{}, fmt.Errorf("%w: the grant expired at %s", ErrInvalid, time.UnixMilli(r.Expires).UTC().Format(time.RFC3339))
	}
	return r, nil
}

// SignResponse validates r and signs it with the owner's identity.
func SignResponse(id *crypto.Identity, r *Response) (crypto.Envelope, error) {
	if err := r.Validate(); err != nil {
		return crypto.Envelope{}, err
	}
	return crypto.SignEnvelope(id, ResponseDomain, canon.Marshal(r)), nil
}
