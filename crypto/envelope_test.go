package crypto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

// fixedID is an identity with a fixed signing seed, so signatures are stable.
func fixedID(t *testing.T, seedByte byte) *Identity {
	t.Helper()
	id, err := GenerateIdentity(bytes.NewReader(bytes.Repeat([]byte{seedByte}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEnvelope(t *testing.T) {
	id, other := fixedID(t, 1), fixedID(t, 2)
	body := []byte("publish manifest 7")
	env := SignEnvelope(id, "registry/command", body)
	if err := env.Verify("registry/command"); err != nil {
		t.Fatalf("fresh envelope: %v", err)
	}

	// The envelope travels in its canonical encoding and verifies after.
	var back Envelope
	if err := canon.Unmarshal(canon.Marshal(env), &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify("registry/command"); err != nil {
		t.Fatalf("decoded envelope: %v", err)
	}
	if !bytes.Equal(back.Body, body) || !back.Signer.Equal(id.SignKey()) || back.Domain != env.Domain {
		t.Fatalf("decoded %+v", back)
	}

	forged := SignEnvelope(other, "registry/command", body)
	for name, e := range map[string]Envelope{
		"other body":        {env.Domain, env.Signer, []byte("publish manifest 8"), env.Sig},
		"no body":           {env.Domain, env.Signer, nil, env.Sig},
		"other signer":      {env.Domain, other.SignKey(), env.Body, env.Sig},
		"signer swapped in": {env.Domain, env.Signer, env.Body, forged.Sig},
		"short signer":      {env.Domain, env.Signer[:31], env.Body, env.Sig},
		"short signature":   {env.Domain, env.Signer, env.Body, env.Sig[:63]},
		"no signature":      {env.Domain, env.Signer, env.Body, nil},
		"flipped signature": {env.Domain, env.Signer, env.Body, flip(env.Sig, 10)},
		"relabelled domain": {"access/request", env.Signer, env.Body, env.Sig},
	} {
		t.Run(name, func(t *testing.T) {
			domain := "registry/command"
			if name == "relabelled domain" {
				domain = "access/request"
			}
			if err := e.Verify(domain); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("got %v, want ErrBadSignature", err)
			}
		})
	}
	if err := env.Verify("access/request"); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("verified in another domain: %v", err)
	}
	if err := env.Verify(""); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("verified in the empty domain: %v", err)
	}
	// The envelope signature is not a plain signature over the body, so a
	// bare Sign over the same body in the same domain is not an envelope.
	plain := Envelope{env.Domain, env.Signer, body, id.Sign("registry/command", body)}
	if err := plain.Verify("registry/command"); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("plain signature accepted as envelope: %v", err)
	}
}

func TestEnvelopeEncoding(t *testing.T) {
	// Ed25519 signatures are deterministic, so the encoding of an envelope
	// from a fixed key is fixed: this pins the tags and the signed content.
	env := SignEnvelope(fixedID(t, 1), "d", []byte{0xaa})
	enc := canon.Marshal(env)
	want := append([]byte{0x03, 1, 'd', 0x05, 32}, env.Signer...)
	want = append(want, 0x07, 1, 0xaa, 0x09, 64)
	want = append(want, env.Sig...)
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding\n%x\nwant\n%x", enc, want)
	}
	content := append([]byte{0x03, 1, 'd', 0x05, 32}, env.Signer...)
	content = append(content, 0x07, 1, 0xaa)
	if !Verify(env.Signer, "d", content, env.Sig) {
		t.Fatal("signature is not over the canonical encoding of domain, signer and body")
	}
	var e Envelope
	if err := canon.Unmarshal(append(enc, 0x0a, 1), &e); !errors.Is(err, canon.ErrNonCanonical) {
		t.Fatalf("unknown field accepted: %v", err)
	}
}

func TestSignEnvelopeEmptyDomainPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	SignEnvelope(fixedID(t, 1), "", nil)
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}
