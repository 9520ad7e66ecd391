package crypto

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"", "Müller-Lüdenscheidt", "Strauß", "O'Brien", "Nguyễn", "Ｓｍｉｔｈ", "ǅ", "\xff", "ﬃ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeName(s)
		for i := 0; i < len(n); i++ {
			if n[i] < 'A' || n[i] > 'Z' {
				t.Fatalf("NormalizeName(%q) = %q has %q", s, n, n[i])
			}
		}
		if again := NormalizeName(n); again != n {
			t.Fatalf("not idempotent: %q, then %q", n, again)
		}
		p := Phonetic(s)
		if (p == "") != (n == "") || (p != "" && (len(p) != 4 || p[0] != n[0] || p != Phonetic(n))) {
			t.Fatalf("Phonetic(%q) = %q (normalized %q)", s, p, n)
		}
		for i := 1; i < len(p); i++ {
			if p[i] < '0' || p[i] > '6' {
				t.Fatalf("Phonetic(%q) = %q", s, p)
			}
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add("id:" + string(bytes.Repeat([]byte("0f"), 32)))
	f.Add("phon:")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("parsed %q, printed %q", s, tok.String())
		}
	})
}

func FuzzEnvelope(f *testing.F) {
	f.Add(canon.Marshal(Envelope{Domain: "d", Signer: make([]byte, 32), Body: []byte("b"), Sig: make([]byte, 64)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Envelope
		if err := canon.Unmarshal(b, &e); err != nil {
			return
		}
		if !utf8.ValidString(e.Domain) || !bytes.Equal(canon.Marshal(e), b) {
			t.Fatalf("decoded %x, re-encoded %x", b, canon.Marshal(e))
		}
		if e.Verify(e.Domain) == nil {
			t.Fatalf("fuzzed envelope verified: %x", b)
		}
	})
}
