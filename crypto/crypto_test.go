package crypto

import (
	"bytes"
	"crypto/rand"
	"io"
	"strings"
	"testing"
)

func newID(t *testing.T) *Identity {
	t.Helper()
	id, err := GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentityTextRoundTrip(t *testing.T) {
	id := newID(t)
	text, err := id.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIdentity(text)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SignKey().Equal(id.SignKey()) || got.Recipient().String() != id.Recipient().String() {
		t.Fatal("parsed identity differs")
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	seed, box := lines[len(lines)-2], lines[len(lines)-1]
	for name, in := range map[string]string{
		"empty":          "",
		"garbage":        "hello\n",
		"missing age":    seed + "\n",
		"missing seed":   box + "\n",
		"duplicate seed": seed + "\n" + seed + "\n" + box + "\n",
		"short seed":     signPrefix + "AAAA\n" + box + "\n",
		"bad age":        seed + "\nAGE-SECRET-KEY-1XYZ\n",
	} {
		if _, err := ParseIdentity([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSignaturesAreDomainSeparated(t *testing.T) {
	id, other := newID(t), newID(t)
	msg := []byte("publish manifest 1")
	sig := id.Sign("registry/command", msg)
	if !Verify(id.SignKey(), "registry/command", msg, sig) {
		t.Fatal("valid signature rejected")
	}
	for name, ok := range map[string]bool{
		"other domain":  Verify(id.SignKey(), "access/request", msg, sig),
		"other message": Verify(id.SignKey(), "registry/command", []byte("publish manifest 2"), sig),
		"other key":     Verify(other.SignKey(), "registry/command", msg, sig),
		"short key":     Verify(id.SignKey()[:8], "registry/command", msg, sig),
		// The domain and message are separated, so shifting a byte across
		// the boundary does not keep the signature valid.
		"shifted boundary": Verify(id.SignKey(), "registry/comman", append([]byte("d"), msg...), sig),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestStudyKeySealing(t *testing.T) {
	a, b, c := newID(t), newID(t), newID(t)
	k, err := GenerateStudyKey()
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	w, _ := k.Encrypt(&ct)
	w.Write([]byte("instance bytes"))
	w.Close()

	sealed, err := k.Seal(a.Recipient(), b.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []*Identity{a, b} {
		got, err := OpenStudyKey(sealed, id.AgeIdentity())
		if err != nil {
			t.Fatal(err)
		}
		r, err := got.Decrypt(bytes.NewReader(ct.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if plain, _ := io.ReadAll(r); string(plain) != "instance bytes" {
			t.Fatalf("decrypted %q", plain)
		}
	}
	if _, err := OpenStudyKey(sealed, c.AgeIdentity()); err == nil {
		t.Fatal("a third facility opened the sealed key")
	}
	tampered := bytes.Clone(ct.Bytes())
	tampered[len(tampered)-3] ^= 1
	r, err := k.Decrypt(bytes.NewReader(tampered))
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if err == nil {
		t.Fatal("tampered ciphertext decrypted")
	}
	if _, err := k.Seal(); err == nil {
		t.Fatal("sealing to nobody succeeded")
	}
}

func TestDeriveKey(t *testing.T) {
	id := newID(t)
	if id.DeriveKey("a") == id.DeriveKey("b") {
		t.Fatal("distinct labels gave one key")
	}
	if id.DeriveKey("a") != id.DeriveKey("a") {
		t.Fatal("derivation is not deterministic")
	}
	if id.DeriveKey("a") == newID(t).DeriveKey("a") {
		t.Fatal("two identities derived the same key")
	}
}
