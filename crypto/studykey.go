package crypto

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// ErrNotRecipient reports ciphertext that was not encrypted or sealed to the
// key that tried to open it.
var ErrNotRecipient = errors.New("crypto: not a recipient")

// StudyKey is the per-study age identity that a study's blocks are encrypted to.
// Access is granted by sealing it to a recipient; the ciphertext never changes.
//
// Objects are encrypted to a SymmetricKey derived from the identity (one
// file key wrap with XChaCha20-Poly1305, not an X25519 exchange, per
// object); objects encrypted to the X25519 recipient itself still decrypt.
type StudyKey struct {
	id  *age.X25519Identity
	sym *SymmetricKey
}

// studyObjects is the HKDF purpose of the key objects are encrypted to.
const studyObjects = "dicomesh study objects v1"

func newStudyKey(id *age.X25519Identity) (*StudyKey, error) {
	sym, err := deriveSymmetricKey([]byte(id.String()), studyObjects)
	if err != nil {
		return nil, err
	}
	return &StudyKey{id: id, sym: sym}, nil
}

// GenerateStudyKey makes a fresh study key (randomness from age, crypto/rand).
func GenerateStudyKey() (*StudyKey, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate study key: %w", err)
	}
	return newStudyKey(id)
}

// Recipient returns the study's age recipient.
func (k *StudyKey) Recipient() *age.X25519Recipient { return k.id.Recipient() }

// String names the key by its recipient; the secret is never formatted.
func (k *StudyKey) String() string { return "study key " + k.id.Recipient().String() }

// GoString is String, so that %#v does not print the secret either.
func (k *StudyKey) GoString() string { return k.String() }

// Encrypt returns a writer that encrypts to the study key and writes to dst.
// The caller must Close it to flush the last chunk.
func (k *StudyKey) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	return k.sym.Encrypt(dst)
}

// AppendEncrypted appends the encryption of plain to the study key to dst:
// the same bytes Encrypt writes, without a copy through its chunk buffer.
func (k *StudyKey) AppendEncrypted(dst, plain []byte) ([]byte, error) {
	return k.sym.AppendEncrypted(dst, plain)
}

// Decrypt returns a reader of the plaintext of src, which must have been
// encrypted to this study key. A malformed or unauthenticated header is an
// error here, one encrypted to another key an error wrapping ErrNotRecipient;
// a corrupt payload surfaces as a read error once the plaintext before it has
// been returned.
func (k *StudyKey) Decrypt(src io.Reader) (io.Reader, error) {
	return decrypt(src, k.sym, k.id)
}

// DecryptReaderAt gives random access to the plaintext of an encrypted object
// of size bytes, and returns the plaintext size. Errors are as for Decrypt,
// except that some corrupt payloads are detected at once.
func (k *StudyKey) DecryptReaderAt(src io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	r, n, err := age.DecryptReaderAt(src, size, k.sym, k.id)
	return r, n, decryptErr(err)
}

// decrypt is the one way into age decryption, for objects and sealed keys.
func decrypt(src io.Reader, ids ...age.Identity) (io.Reader, error) {
	r, err := age.Decrypt(src, ids...)
	return r, decryptErr(err)
}

func decryptErr(err error) error {
	var nm *age.NoIdentityMatchError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nm):
		return fmt.Errorf("decrypt: %w: %w", ErrNotRecipient, err)
	}
	return fmt.Errorf("decrypt: %w", err)
}

// Seal encrypts the study key to the given recipients. The result is the only
// form in which a study key leaves the process.
func (k *StudyKey) Seal(to ...age.Recipient) ([]byte, error) {
	b, err := Seal([]byte(k.id.String()), to...)
	if err != nil {
		return nil, fmt.Errorf("study key: %w", err)
	}
	return b, nil
}

// maxSealedKey bounds how much of a sealed study key is read.
const maxSealedKey = 1 << 10

// OpenStudyKey decrypts a study key sealed with Seal. A key sealed to others
// gives an error wrapping ErrNotRecipient.
func OpenStudyKey(sealed []byte, with age.Identity) (*StudyKey, error) {
	text, err := Open(sealed, with, maxSealedKey)
	if err != nil {
		return nil, fmt.Errorf("study key: %w", err)
	}
	k, err := parseStudyKey(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("open study key: %w", err)
	}
	return k, nil
}

// parseStudyKey reads a study key in age's identity encoding.
func parseStudyKey(s string) (*StudyKey, error) {
	id, err := age.ParseX25519Identity(s)
	if err != nil {
		return nil, err
	}
	return newStudyKey(id)
}
