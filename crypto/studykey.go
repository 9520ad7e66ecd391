package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// StudyKey is the per-study age identity that a study's blocks are encrypted to.
// Access is granted by sealing it to a recipient; the ciphertext never changes.
type StudyKey struct {
	id *age.X25519Identity
}

// GenerateStudyKey makes a fresh study key (randomness from age, crypto/rand).
func GenerateStudyKey() (*StudyKey, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate study key: %w", err)
	}
	return &StudyKey{id: id}, nil
}

// Recipient returns the study's age recipient.
func (k *StudyKey) Recipient() *age.X25519Recipient { return k.id.Recipient() }

// Encrypt returns a writer that encrypts to the study key and writes to dst.
// The caller must Close it to flush the last chunk.
func (k *StudyKey) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	return age.Encrypt(dst, k.id.Recipient())
}

// Decrypt returns a reader of the plaintext of src, which must have been
// encrypted to this study key. Authentication failures surface as read errors.
func (k *StudyKey) Decrypt(src io.Reader) (io.Reader, error) {
	return age.Decrypt(src, k.id)
}

// DecryptReaderAt gives random access to the plaintext of an encrypted object.
func (k *StudyKey) DecryptReaderAt(src io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	return age.DecryptReaderAt(src, size, k.id)
}

// Seal encrypts the study key to the given recipients. The result is the only
// form in which a study key leaves the process.
func (k *StudyKey) Seal(to ...age.Recipient) ([]byte, error) {
	if len(to) == 0 {
		return nil, errors.New("seal study key: no recipients")
	}
	var b bytes.Buffer
	w, err := age.Encrypt(&b, to...)
	if err != nil {
		return nil, fmt.Errorf("seal study key: %w", err)
	}
	if _, err := io.WriteString(w, k.id.String()); err != nil {
		return nil, fmt.Errorf("seal study key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal study key: %w", err)
	}
	return b.Bytes(), nil
}

// maxSealedKey bounds how much of a sealed study key is read.
const maxSealedKey = 1 << 10

// OpenStudyKey decrypts a study key sealed with Seal.
func OpenStudyKey(sealed []byte, with age.Identity) (*StudyKey, error) {
	r, err := age.Decrypt(bytes.NewReader(sealed), with)
	if err != nil {
		return nil, fmt.Errorf("open study key: %w", err)
	}
	text, err := io.ReadAll(io.LimitReader(r, maxSealedKey+1))
	if err != nil {
		return nil, fmt.Errorf("open study key: %w", err)
	}
	if len(text) > maxSealedKey {
		return nil, errors.New("open study key: sealed key too large")
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("open study key: %w", err)
	}
	return &StudyKey{id: id}, nil
}
