package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
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
		"duplicate age":  seed + "\n" + box + "\n" + box + "\n",
		"garbage line":   seed + "\n" + box + "\nx\n",
		"seed as text":   signPrefix + "not base64!\n" + box + "\n",
		"padded seed":    seed + "=\n" + box + "\n",
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
	if _, err := OpenStudyKey(sealed, c.AgeIdentity()); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("a third facility opening the sealed key: %v", err)
	}
	if _, err := OpenStudyKey(sealed[:len(sealed)-1], a.AgeIdentity()); err == nil {
		t.Fatal("truncated sealed key opened")
	}
	other, _ := GenerateStudyKey()
	if _, err := other.Decrypt(bytes.NewReader(ct.Bytes())); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("another study key decrypting: %v", err)
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
	if a1, a2 := id.DeriveKey("a"), id.DeriveKey("a"); a1 != a2 {
		t.Fatal("derivation is not deterministic")
	}
	if id.DeriveKey("a") == newID(t).DeriveKey("a") {
		t.Fatal("two identities derived the same key")
	}
}

func TestIdentityTextTolerance(t *testing.T) {
	id := newID(t)
	text, _ := id.MarshalText()
	crlf := strings.ReplaceAll(string(text), "\n", "\r\n")
	got, err := ParseIdentity([]byte("\n# a comment\n" + crlf))
	if err != nil {
		t.Fatal(err)
	}
	if !got.SignKey().Equal(id.SignKey()) {
		t.Fatal("parsed identity differs")
	}
}

func TestGenerateIdentityUsesRand(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	a, err := GenerateIdentity(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateIdentity(bytes.NewReader(seed))
	if !a.SignKey().Equal(b.SignKey()) {
		t.Fatal("one seed gave two signing keys")
	}
	if _, err := GenerateIdentity(bytes.NewReader(seed[:31])); err == nil {
		t.Fatal("short randomness accepted")
	}
}

func TestSecretsAreNotFormatted(t *testing.T) {
	id := newID(t)
	k, _ := GenerateStudyKey()
	text, _ := id.MarshalText()
	seedLine := strings.Split(strings.TrimSpace(string(text)), "\n")[3]
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, v := range []any{id, k} {
			out := fmt.Sprintf(verb, v)
			for _, secret := range []string{
				fmt.Sprintf("%x", id.PrivateSignKey().Seed()), strings.TrimPrefix(seedLine, signPrefix),
				id.AgeIdentity().String(), k.id.String(), strings.TrimSuffix(fmt.Sprint([]byte(id.PrivateSignKey())[:8]), "]"),
			} {
				if strings.Contains(strings.ToUpper(out), strings.ToUpper(secret)) {
					t.Errorf("%s of %T shows a secret: %s", verb, v, out)
				}
			}
		}
	}
}

func TestStudyKeyRandomAccess(t *testing.T) {
	k, _ := GenerateStudyKey()
	plain := bytes.Repeat([]byte("0123456789abcdef"), 10000) // several 64 KiB chunks
	ct := bytes.NewBuffer(encrypted(t, k, plain))
	r, size, err := k.DecryptReaderAt(bytes.NewReader(ct.Bytes()), int64(ct.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(plain)) {
		t.Fatalf("size %d, want %d", size, len(plain))
	}
	got := make([]byte, 100)
	if _, err := r.ReadAt(got, 70000); err != nil || !bytes.Equal(got, plain[70000:70100]) {
		t.Fatalf("ReadAt across a chunk boundary: %v", err)
	}
	other, _ := GenerateStudyKey()
	if _, _, err := other.DecryptReaderAt(bytes.NewReader(ct.Bytes()), int64(ct.Len())); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("another key: %v", err)
	}
}
