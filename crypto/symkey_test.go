package crypto

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
)

// ageTo encrypts with age's own writer.
type ageTo struct{ r age.Recipient }

func (a ageTo) Encrypt(w io.Writer) (io.WriteCloser, error) { return age.Encrypt(w, a.r) }

// encrypted is plain encrypted by a key's own writer (StudyKey,
// SymmetricKey, ageTo).
func encrypted(t *testing.T, k interface {
	Encrypt(io.Writer) (io.WriteCloser, error)
}, plain []byte) []byte {
	t.Helper()
	var ct bytes.Buffer
	w, err := k.Encrypt(&ct)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ct.Bytes()
}

func readAll(r io.Reader, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestSymmetricKey(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, SymmetricKeySize)
	k, err := NewSymmetricKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSymmetricKey(bytes.Repeat([]byte{8}, SymmetricKeySize))
	plain := bytes.Repeat([]byte("pixel data "), 20000) // several STREAM chunks
	ct := bytes.NewBuffer(encrypted(t, k, plain))
	if !bytes.Contains(ct.Bytes(), []byte("\n-> dicomesh-sym ")) || bytes.Contains(ct.Bytes(), []byte("X25519")) {
		t.Fatalf("header is not one dicomesh-sym stanza:\n%s", ct.Bytes()[:200])
	}
	if got, err := readAll(k.Decrypt(bytes.NewReader(ct.Bytes()))); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
	// Plain age reads it with the key as its identity.
	if got, err := readAll(age.Decrypt(bytes.NewReader(ct.Bytes()), k)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("age.Decrypt: %v", err)
	}
	if _, err := other.Decrypt(bytes.NewReader(ct.Bytes())); !errors.Is(err, ErrNotRecipient) {
		t.Errorf("another key: %v, want ErrNotRecipient", err)
	}
	x, _ := age.GenerateX25519Identity()
	if _, err := decrypt(bytes.NewReader(ct.Bytes()), x); !errors.Is(err, ErrNotRecipient) {
		t.Errorf("an X25519 identity: %v, want ErrNotRecipient", err)
	}
	// Every byte of the stanza matters: the body is authenticated, the
	// nonce is its input, and the header's MAC covers the rest.
	hdr := ct.Bytes()[:bytes.Index(ct.Bytes(), []byte("\n---"))]
	for i := bytes.Index(hdr, []byte("-> ")); i < len(hdr); i++ {
		if hdr[i] == '\n' || hdr[i] == ' ' {
			continue
		}
		bad := bytes.Clone(ct.Bytes())
		bad[i] ^= 0x01
		if _, err := readAll(k.Decrypt(bytes.NewReader(bad))); err == nil {
			t.Fatalf("header byte %d changed and the file still decrypts", i)
		}
	}
	if _, err := NewSymmetricKey(secret[1:]); err == nil {
		t.Error("a 31-byte secret made a key")
	}
}

func TestSymmetricKeyStanzaChecks(t *testing.T) {
	k, _ := NewSymmetricKey(bytes.Repeat([]byte{1}, SymmetricKeySize))
	good, _ := k.Wrap(make([]byte, fileKeyLen))
	nonce := good[0].Args[0]
	for _, tc := range []struct {
		name string
		s    age.Stanza
	}{
		{"no argument", age.Stanza{Type: symStanza, Body: good[0].Body}},
		{"two arguments", age.Stanza{Type: symStanza, Args: []string{nonce, nonce}, Body: good[0].Body}},
		{"short nonce", age.Stanza{Type: symStanza, Args: []string{base64.RawStdEncoding.EncodeToString(make([]byte, 12))}, Body: good[0].Body}},
		{"padded nonce", age.Stanza{Type: symStanza, Args: []string{nonce + "=="}, Body: good[0].Body}},
		{"long body", age.Stanza{Type: symStanza, Args: []string{nonce}, Body: append(bytes.Clone(good[0].Body), 0)}},
	} {
		if _, err := k.Unwrap([]*age.Stanza{&tc.s}); err == nil || errors.Is(err, age.ErrIncorrectIdentity) {
			t.Errorf("%s: %v, want a malformed-stanza error", tc.name, err)
		}
	}
	if _, err := k.Unwrap([]*age.Stanza{{Type: "X25519", Args: []string{"a"}}}); !errors.Is(err, age.ErrIncorrectIdentity) {
		t.Errorf("another stanza type: %v", err)
	}
	got, err := k.Unwrap(good)
	if err != nil || !bytes.Equal(got, make([]byte, fileKeyLen)) {
		t.Errorf("Unwrap(Wrap) = %x, %v", got, err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v %x", k, k, k, k), "0101") {
		t.Error("the secret is formatted")
	}
}

// Objects written before study keys had a symmetric key, encrypted to the
// study's X25519 recipient, still decrypt; new ones carry no X25519 stanza.
func TestStudyKeyReadsX25519Objects(t *testing.T) {
	k, _ := GenerateStudyKey()
	old := encrypted(t, ageTo{k.Recipient()}, []byte("older instance"))
	if got, err := readAll(k.Decrypt(bytes.NewReader(old))); err != nil || string(got) != "older instance" {
		t.Fatalf("X25519 object: %q, %v", got, err)
	}
	r, n, err := k.DecryptReaderAt(bytes.NewReader(old), int64(len(old)))
	if err != nil || n != int64(len("older instance")) {
		t.Fatalf("DecryptReaderAt of an X25519 object: %d, %v", n, err)
	}
	buf := make([]byte, 5)
	if _, err := r.ReadAt(buf, 6); err != nil || string(buf) != "insta" {
		t.Fatalf("ReadAt: %q, %v", buf, err)
	}
	// The symmetric key follows from the identity: a key sealed and
	// opened elsewhere decrypts what this one encrypted.
	ct := bytes.NewBuffer(encrypted(t, k, []byte("newer instance")))
	if bytes.Contains(ct.Bytes(), []byte("X25519")) {
		t.Error("a new object has an X25519 stanza")
	}
	again, err := parseStudyKey(k.id.String())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(again.Decrypt(bytes.NewReader(ct.Bytes()))); err != nil || string(got) != "newer instance" {
		t.Fatalf("the same key, parsed: %q, %v", got, err)
	}
}
