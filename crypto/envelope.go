package crypto

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

// ErrBadSignature reports a signature that does not verify: made in another
// domain, by another key, over other bytes, or malformed.
var ErrBadSignature = errors.New("crypto: bad signature")

// Envelope is a signed message: Body (usually the canonical encoding of a
// command, request or grant), signed by Signer in Domain. The signature covers
// the canonical encoding of the domain, the signer and the body, so none of
// them can be swapped without invalidating it.
//
// An Envelope has a canonical encoding of its own (tags 1 to 4: Domain,
// Signer, Body, Sig), which is how it travels and is stored.
type Envelope struct {
	Domain string
	Signer ed25519.PublicKey
	Body   []byte
	Sig    []byte
}

var (
	_ canon.Marshaler   = Envelope{}
	_ canon.Unmarshaler = (*Envelope)(nil)
)

// SignEnvelope signs body in domain with id's signing key. An empty domain is
// a programming error and panics.
func SignEnvelope(id *Identity, domain string, body []byte) Envelope {
	if domain == "" {
		panic("crypto: sign envelope with an empty domain")
	}
	e := Envelope{Domain: domain, Signer: id.SignKey(), Body: body}
	e.Sig = id.Sign(domain, e.signed())
	return e
}

// signed returns the bytes the signature covers.
func (e Envelope) signed() []byte {
	return canon.Marshal(envelopeContent{e})
}

// Verify checks that e was signed in domain by e.Signer. It returns an error
// wrapping ErrBadSignature if the domain differs, the key or signature is
// malformed, or the signature does not verify. Verify does not say whether
// the signer is trusted: callers compare e.Signer with the key they expect.
func (e Envelope) Verify(domain string) error {
	switch {
	case domain == "" || e.Domain != domain:
		return fmt.Errorf("verify envelope: domain %q, want %q: %w", e.Domain, domain, ErrBadSignature)
	case len(e.Signer) != ed25519.PublicKeySize:
		return fmt.Errorf("verify envelope: signer key of %d bytes: %w", len(e.Signer), ErrBadSignature)
	case len(e.Sig) != ed25519.SignatureSize:
		return fmt.Errorf("verify envelope: signature of %d bytes: %w", len(e.Sig), ErrBadSignature)
	case !Verify(e.Signer, domain, e.signed(), e.Sig):
		return fmt.Errorf("verify envelope in domain %q: %w", domain, ErrBadSignature)
	}
	return nil
}

// MarshalCanonical implements canon.Marshaler.
func (e Envelope) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, e.Domain)
	enc.Bytes(2, e.Signer)
	enc.Bytes(3, e.Body)
	enc.Bytes(4, e.Sig)
}

// UnmarshalCanonical implements canon.Unmarshaler. It checks the encoding
// only; call Verify to check the signature.
func (e *Envelope) UnmarshalCanonical(d *canon.Decoder) {
	e.Domain = d.String(1)
	e.Signer = d.Bytes(2)
	e.Body = d.Bytes(3)
	e.Sig = d.Bytes(4)
}

// envelopeContent is the signed part of an envelope: tags 1 to 3 of its
// encoding, without the signature.
type envelopeContent struct{ e Envelope }

func (c envelopeContent) MarshalCanonical(enc *canon.Encoder) {
	enc.String(1, c.e.Domain)
	enc.Bytes(2, c.e.Signer)
	enc.Bytes(3, c.e.Body)
}
