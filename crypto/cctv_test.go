package crypto

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"

	agetest "c2sp.org/CCTV/age"
)

// cctvVector is one file of the C2SP age test vectors (c2sp.org/CCTV/age).
type cctvVector struct {
	expect     string
	payload    *[32]byte
	identities []string
	armored    bool
	passphrase bool
	file       []byte
}

func parseCCTV(t *testing.T, b []byte) cctvVector {
	t.Helper()
	var v cctvVector
	compressed := false
	for {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			t.Fatal("vector without a payload")
		}
		b = rest
		if len(line) == 0 {
			break
		}
		key, value, _ := strings.Cut(string(line), ": ")
		switch key {
		case "expect":
			v.expect = value
		case "payload":
			h, err := hex.DecodeString(value)
			if err != nil || len(h) != 32 {
				t.Fatalf("bad payload hash %q", value)
			}
			v.payload = (*[32]byte)(h)
		case "identity":
			v.identities = append(v.identities, value)
		case "passphrase":
			v.passphrase = true
		case "armored":
			v.armored = true
		case "compressed":
			compressed = true
		case "file key", "comment":
		default:
			t.Fatalf("unknown vector header %q", key)
		}
	}
	v.file = b
	if compressed {
		r, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if v.file, err = io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// TestCCTVAgeVectors runs the C2SP age vectors through StudyKey's decryption
// (Decrypt and DecryptReaderAt, which share the error mapping of OpenStudyKey).
// Vectors outside what a StudyKey can be are skipped: passphrase (scrypt)
// files, since dicomesh never encrypts to a passphrase; ASCII-armored files,
// since every dicomesh object is binary; and hybrid post-quantum identities,
// since a StudyKey is an X25519 identity. "HMAC failure" and "header failure"
// are one case here: both are errors from Decrypt that are not
// ErrNotRecipient.
func TestCCTVAgeVectors(t *testing.T) {
	entries, err := fs.ReadDir(agetest.Vectors, ".")
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	for _, e := range entries {
		b, err := fs.ReadFile(agetest.Vectors, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		v := parseCCTV(t, b)
		if v.passphrase || v.armored || slices.ContainsFunc(v.identities, func(id string) bool {
			return strings.HasPrefix(id, "AGE-SECRET-KEY-PQ-")
		}) {
			continue
		}
		if len(v.identities) > 1 {
			t.Fatalf("%s: %d identities; a study key is one", e.Name(), len(v.identities))
		}
		ran[v.expect]++
		t.Run(e.Name(), func(t *testing.T) {
			var k *StudyKey
			if len(v.identities) == 1 {
				if k, err = parseStudyKey(v.identities[0]); err != nil {
					t.Fatal(err)
				}
			} else if k, err = GenerateStudyKey(); err != nil {
				t.Fatal(err)
			}
			plain := cctvDecrypt(t, k, v)
			cctvDecryptReaderAt(t, k, v, plain)
		})
	}
	t.Logf("vectors run by expectation: %v", ran)
	if ran["success"] < 10 || ran["payload failure"] < 10 || ran["header failure"] < 10 || ran["no match"] < 1 || ran["HMAC failure"] < 1 {
		t.Errorf("too few vectors ran: %v", ran)
	}
}

func cctvDecrypt(t *testing.T, k *StudyKey, v cctvVector) []byte {
	t.Helper()
	r, err := k.Decrypt(bytes.NewReader(v.file))
	switch v.expect {
	case "no match":
		if !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("want ErrNotRecipient, got %v", err)
		}
		return nil
	case "header failure", "HMAC failure":
		if err == nil || errors.Is(err, ErrNotRecipient) {
			t.Fatalf("want a header error, got %v", err)
		}
		return nil
	case "success", "payload failure":
		if err != nil {
			t.Fatalf("header: %v", err)
		}
	default:
		t.Fatalf("unknown expectation %q", v.expect)
	}
	out, err := io.ReadAll(r)
	if v.expect == "success" && err != nil {
		t.Fatalf("payload: %v", err)
	}
	if v.expect == "payload failure" && err == nil {
		t.Fatal("corrupt payload decrypted")
	}
	// For a failure, what was released before the error must match too.
	if sha256.Sum256(out) != *v.payload {
		t.Errorf("payload hash mismatch after %d bytes", len(out))
	}
	return out
}

func cctvDecryptReaderAt(t *testing.T, k *StudyKey, v cctvVector, plain []byte) {
	t.Helper()
	r, size, err := k.DecryptReaderAt(bytes.NewReader(v.file), int64(len(v.file)))
	switch v.expect {
	case "no match":
		if !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("ReaderAt: want ErrNotRecipient, got %v", err)
		}
		return
	case "header failure", "HMAC failure":
		if err == nil || errors.Is(err, ErrNotRecipient) {
			t.Fatalf("ReaderAt: want a header error, got %v", err)
		}
		return
	case "payload failure":
		if err != nil {
			return // some payload failures are found at once, from the size or the last chunk
		}
	case "success":
		if err != nil {
			t.Fatalf("ReaderAt: %v", err)
		}
		if size != int64(len(plain)) {
			t.Fatalf("ReaderAt: size %d, want %d", size, len(plain))
		}
	}
	out, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if v.expect == "success" {
		if err != nil || sha256.Sum256(out) != *v.payload {
			t.Fatalf("ReaderAt: read %d bytes, %v", len(out), err)
		}
		return
	}
	if err == nil {
		t.Fatal("ReaderAt: corrupt payload decrypted")
	}
	// Random access may notice a failure sooner than a linear read, so only
	// a prefix of what Decrypt released can be demanded.
	if !bytes.HasPrefix(plain, out) {
		t.Errorf("ReaderAt: released %d bytes that Decrypt did not", len(out))
	}
}
