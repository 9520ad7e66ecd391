package crypto

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

func TestSealOpen(t *testing.T) {
	me, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	secret := []byte("thirty-two bytes of a spool key!")
	sealed, err := Seal(secret, me.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the secret is in the sealed bytes")
	}
	got, err := Open(sealed, me, len(secret))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := Open(sealed, other, len(secret)); !errors.Is(err, ErrNotRecipient) {
		t.Errorf("opened by another identity: %v, want ErrNotRecipient", err)
	}
	if _, err := Open(sealed, me, len(secret)-1); err == nil {
		t.Error("more plaintext than the bound was returned")
	}
	if _, err := Seal(secret); err == nil {
		t.Error("sealed to nobody")
	}
}
