package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// signPrefix marks the line of an identity file that holds the Ed25519 seed.
const signPrefix = "DICOMESH-ED25519-SEED-"

// Identity is a facility's long-term key material: an Ed25519 signing key (also
// its libp2p peer identity) and an age X25519 identity that grants and federation
// secrets are sealed to.
type Identity struct {
	sign ed25519.PrivateKey
	box  *age.X25519Identity
}

// PublicIdentity is what other members know of a facility.
type PublicIdentity struct {
	SignKey   ed25519.PublicKey
	Recipient *age.X25519Recipient
}

// GenerateIdentity makes a new facility identity. The Ed25519 seed is read from
// rand; the age identity comes from age's own generator (crypto/rand).
func GenerateIdentity(rand io.Reader) (*Identity, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	box, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	return &Identity{sign: ed25519.NewKeyFromSeed(seed), box: box}, nil
}

// ParseIdentity reads the text form written by MarshalText. Blank lines and lines
// starting with '#' are ignored.
func ParseIdentity(text []byte) (*Identity, error) {
	var id Identity
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, signPrefix):
			if id.sign != nil {
				return nil, errors.New("parse identity: duplicate signing key")
			}
			seed, err := base64.RawStdEncoding.Strict().DecodeString(strings.TrimPrefix(line, signPrefix))
			if err != nil || len(seed) != ed25519.SeedSize {
				return nil, errors.New("parse identity: malformed signing key")
			}
			id.sign = ed25519.NewKeyFromSeed(seed)
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			if id.box != nil {
				return nil, errors.New("parse identity: duplicate age identity")
			}
			box, err := age.ParseX25519Identity(line)
			if err != nil {
				return nil, fmt.Errorf("parse identity: %w", err)
			}
			id.box = box
		default:
			return nil, errors.New("parse identity: unrecognized line")
		}
	}
	if id.sign == nil || id.box == nil {
		return nil, errors.New("parse identity: signing key or age identity missing")
	}
	return &id, nil
}

// MarshalText returns the identity file contents. They are secret.
func (id *Identity) MarshalText() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# dicomesh facility identity: keep secret, mode 0600\n")
	fmt.Fprintf(&b, "# peer signing key %x\n", id.SignKey())
	fmt.Fprintf(&b, "# recipient %s\n", id.box.Recipient())
	b.WriteString(signPrefix + base64.RawStdEncoding.EncodeToString(id.sign.Seed()) + "\n")
	b.WriteString(id.box.String() + "\n")
	return b.Bytes(), nil
}

// String names the identity by its public signing key; the secrets are never
// formatted.
func (id *Identity) String() string { return fmt.Sprintf("facility identity %x", id.SignKey()) }

// GoString is String, so that %#v does not print the secrets either.
func (id *Identity) GoString() string { return id.String() }

// Public returns the facility's public keys.
func (id *Identity) Public() PublicIdentity {
	return PublicIdentity{SignKey: id.SignKey(), Recipient: id.box.Recipient()}
}

// SignKey returns the Ed25519 public key.
func (id *Identity) SignKey() ed25519.PublicKey { return id.sign.Public().(ed25519.PublicKey) }

// PrivateSignKey returns the Ed25519 private key, for the libp2p host identity and
// signed notes. Callers must not retain or log it.
func (id *Identity) PrivateSignKey() ed25519.PrivateKey { return id.sign }

// AgeIdentity returns the facility's age identity, for opening what was sealed to it.
func (id *Identity) AgeIdentity() *age.X25519Identity { return id.box }

// Recipient returns the facility's age recipient.
func (id *Identity) Recipient() *age.X25519Recipient { return id.box.Recipient() }

// DeriveKey derives a 32-byte symmetric key bound to label from the facility's
// signing seed (HKDF-SHA-256). Distinct labels give independent keys.
func (id *Identity) DeriveKey(label string) [32]byte {
	k, err := hkdf.Key(sha256.New, id.sign.Seed(), nil, "dicomesh derive-key v1 "+label, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return [32]byte(k)
}

// Sign signs msg in the given domain. The domain separates signatures over
// different kinds of message, so that one can never be replayed as another.
func (id *Identity) Sign(domain string, msg []byte) []byte {
	return ed25519.Sign(id.sign, signedBytes(domain, msg))
}

// Verify reports whether sig is pub's signature over msg in domain.
func Verify(pub ed25519.PublicKey, domain string, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, signedBytes(domain, msg), sig)
}

func signedBytes(domain string, msg []byte) []byte {
	b := make([]byte, 0, len("dicomesh/sig/v1\x00")+len(domain)+1+len(msg))
	b = append(b, "dicomesh/sig/v1\x00"...)
	b = append(b, domain...)
	b = append(b, 0)
	return append(b, msg...)
}
