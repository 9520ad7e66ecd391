package crypto

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// SymmetricKey is a 32-byte secret that age files are encrypted to
// directly. Its stanza wraps the file key with XChaCha20-Poly1305 under the
// secret; an X25519 recipient costs a key generation and a Diffie-Hellman
// for every file, which for a study of hundreds of instances, each its own
// file, is a large share of the time it takes to encrypt them. The payload
// is age's STREAM, as with any other recipient.
//
// The stanza is
//
//	-> dicomesh-sym <base64 nonce, 24 bytes>
//	<base64 XChaCha20-Poly1305(key, nonce, file key, "dicomesh-sym")>
//
// SymmetricKey is both the age.Recipient and the age.Identity.
type SymmetricKey struct {
	aead cipher.AEAD
}

const (
	symStanza  = "dicomesh-sym"
	symAD      = "dicomesh-sym"
	fileKeyLen = 16 // age's file key
)

// SymmetricKeySize is the size of a SymmetricKey's secret.
const SymmetricKeySize = chacha20poly1305.KeySize

// NewSymmetricKey returns the key for a secret of SymmetricKeySize bytes.
func NewSymmetricKey(secret []byte) (*SymmetricKey, error) {
	if len(secret) != SymmetricKeySize {
		return nil, fmt.Errorf("symmetric key of %d bytes, want %d", len(secret), SymmetricKeySize)
	}
	aead, err := chacha20poly1305.NewX(secret)
	if err != nil {
		return nil, err
	}
	return &SymmetricKey{aead: aead}, nil
}

// deriveSymmetricKey derives a SymmetricKey from another secret, for one
// purpose.
func deriveSymmetricKey(secret []byte, purpose string) (*SymmetricKey, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, purpose, SymmetricKeySize)
	if err != nil {
		return nil, err
	}
	return NewSymmetricKey(k)
}

// Wrap implements age.Recipient.
func (k *SymmetricKey) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return []*age.Stanza{{
		Type: symStanza,
		Args: []string{base64.RawStdEncoding.EncodeToString(nonce)},
		Body: k.aead.Seal(nil, nonce, fileKey, []byte(symAD)),
	}}, nil
}

// Unwrap implements age.Identity: a stanza of another type, or one that
// does not open under this key, is age.ErrIncorrectIdentity.
func (k *SymmetricKey) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		if s.Type != symStanza {
			continue
		}
		if len(s.Args) != 1 {
			return nil, errors.New("dicomesh-sym stanza: want one argument")
		}
		nonce, err := base64.RawStdEncoding.Strict().DecodeString(s.Args[0])
		if err != nil || len(nonce) != chacha20poly1305.NonceSizeX {
			return nil, errors.New("dicomesh-sym stanza: malformed nonce")
		}
		if len(s.Body) != fileKeyLen+chacha20poly1305.Overhead {
			return nil, errors.New("dicomesh-sym stanza: malformed body")
		}
		fileKey, err := k.aead.Open(nil, nonce, s.Body, []byte(symAD))
		if err != nil {
			continue // another key's
		}
		return fileKey, nil
	}
	return nil, age.ErrIncorrectIdentity
}

// Encrypt returns a writer that encrypts to k and writes to dst. The caller
// must Close it to flush the last chunk.
func (k *SymmetricKey) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	return newStreamWriter(dst, k)
}

// AppendEncrypted appends the age encryption of plain to k to dst.
func (k *SymmetricKey) AppendEncrypted(dst, plain []byte) ([]byte, error) {
	return appendEncrypted(dst, plain, k)
}

// Decrypt returns a reader of the plaintext of src, encrypted to k; errors
// are as for StudyKey.Decrypt.
func (k *SymmetricKey) Decrypt(src io.Reader) (io.Reader, error) {
	return decrypt(src, k)
}

// String names the kind of key only: the secret is never formatted.
func (k *SymmetricKey) String() string { return "symmetric key" }

// GoString is String.
func (k *SymmetricKey) GoString() string { return k.String() }
