package crypto

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"filippo.io/age"
)

// The payload is written here, not by age: age.Decrypt must read it back
// for every size around the chunk boundaries, written whole or in pieces,
// to an X25519 recipient as to a symmetric key, and must refuse it cut
// short or with a chunk dropped.
func TestPayloadIsAge(t *testing.T) {
	x, _ := age.GenerateX25519Identity()
	sym, _ := NewSymmetricKey(bytes.Repeat([]byte{3}, SymmetricKeySize))
	keys := []struct {
		to age.Recipient
		id age.Identity
	}{{x.Recipient(), x}, {sym, sym}}
	rng := rand.New(rand.NewPCG(1, 2))
	plain := make([]byte, 3*chunkSize+5)
	for i := range plain {
		plain[i] = byte(rng.Uint32())
	}
	sizes := []int{0, 1, 100, chunkSize - 1, chunkSize, chunkSize + 1, 2 * chunkSize, 3*chunkSize + 5}
	for _, k := range keys {
		for _, n := range sizes {
			whole, err := appendEncrypted([]byte("prefix"), plain[:n], k.to)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(whole, []byte("prefixage-encryption.org/v1\n")) {
				t.Fatalf("size %d: not appended after the prefix", n)
			}
			whole = whole[len("prefix"):]
			var streamed bytes.Buffer
			w, err := newStreamWriter(&streamed, k.to)
			if err != nil {
				t.Fatal(err)
			}
			for p := plain[:n]; len(p) > 0; {
				c := min(len(p), 1+rng.IntN(3*chunkSize/2))
				w.Write(p[:c])
				p = p[c:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte{1}); err == nil {
				t.Fatal("write after close")
			}
			for name, ct := range map[string][]byte{"whole": whole, "streamed": streamed.Bytes()} {
				got, err := readAll(age.Decrypt(bytes.NewReader(ct), k.id))
				if err != nil || !bytes.Equal(got, plain[:n]) {
					t.Fatalf("%T, %s, size %d: age.Decrypt gave %d bytes, %v", k.to, name, n, len(got), err)
				}
				if len(ct) != len(whole) {
					t.Fatalf("size %d: %s is %d bytes, whole %d", n, name, len(ct), len(whole))
				}
				hdr := bytes.Index(ct, []byte("\n---")) + 1
				hdr += bytes.IndexByte(ct[hdr:], '\n') + 1 + payloadNonce
				if len(ct) > hdr+1 {
					if _, err := readAll(age.Decrypt(bytes.NewReader(ct[:len(ct)-1]), k.id)); err == nil {
						t.Fatalf("size %d: cut short by a byte and still decrypts", n)
					}
				}
				if n > chunkSize { // drop the first chunk
					cut := append(bytes.Clone(ct[:hdr]), ct[hdr+chunkSize+16:]...)
					if _, err := readAll(age.Decrypt(bytes.NewReader(cut), k.id)); err == nil {
						t.Fatalf("size %d: a chunk dropped and still decrypts", n)
					}
				}
			}
		}
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestStreamWriterReportsWriteErrors(t *testing.T) {
	k, _ := NewSymmetricKey(bytes.Repeat([]byte{5}, SymmetricKeySize))
	w, err := k.Encrypt(&failingWriter{after: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 3*chunkSize)); err == nil {
		t.Fatal("a write that failed underneath returned nil")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write returned nil")
	}
	if _, err := k.Encrypt(&failingWriter{after: 10}); err == nil {
		t.Fatal("a header that could not be written returned a writer")
	}
}
