package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

// Seal encrypts a small secret (a key, sealed details) to the recipients
// with age, in memory.
func Seal(plain []byte, to ...age.Recipient) ([]byte, error) {
	if len(to) == 0 {
		return nil, errors.New("seal: no recipients")
	}
	var b bytes.Buffer
	w, err := age.Encrypt(&b, to...)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return b.Bytes(), nil
}

// Open decrypts what Seal made, refusing more than max bytes of plaintext.
// Something sealed to others gives an error wrapping ErrNotRecipient.
func Open(sealed []byte, with age.Identity, max int) ([]byte, error) {
	r, err := decrypt(bytes.NewReader(sealed), with)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if len(plain) > max {
		return nil, fmt.Errorf("open: more than %d bytes sealed", max)
	}
	return plain, nil
}
