package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

// Patient tokens let members find one patient's studies at other facilities
// without a shared demographics hub. A token is HMAC-SHA-256, keyed with the
// federation's linkage key, over normalized patient fields:
//
//	msg   = "dicomesh/patient-token/v1" || 0x00 || kind || field ...
//	field = uint32 big-endian length || bytes
//
// kind is one byte and the fields per kind are, in order:
//
//	TokenID          (1): NormalizeIssuer(Issuer), trimmed ID
//	TokenDemographic (2): NormalizeName(Family), NormalizeName(Given),
//	                      NormalizeBirthDate(BirthDate), NormalizeSex(Sex)
//	TokenPhonetic    (3): Phonetic(Family), NormalizeBirthDate(BirthDate),
//	                      NormalizeSex(Sex)
//
// The length prefixes keep "AB"+"C" and "A"+"BC" apart, and the kind byte
// keeps tokens of different kinds apart. crypto/testdata/tokens.json pins the
// format with vectors computed by an independent implementation.
const tokenContext = "dicomesh/patient-token/v1\x00"

// ErrInvalidBirthDate reports a birth date that is not a calendar date in one
// of the accepted forms.
var ErrInvalidBirthDate = errors.New("crypto: invalid birth date")

// ErrInvalidToken reports a token string or encoding that does not parse.
var ErrInvalidToken = errors.New("crypto: invalid patient token")

// LinkageKey is the federation secret that patient tokens are keyed with.
type LinkageKey [32]byte

// String hides the key.
func (LinkageKey) String() string { return "LinkageKey(redacted)" }

// GoString hides the key from %#v.
func (k LinkageKey) GoString() string { return k.String() }

// Patient holds a facility's local values for one patient, as recorded. They
// are normalized when tokens are computed.
type Patient struct {
	Issuer    string // issuer of the patient ID (namespace), e.g. the facility's assigning authority
	ID        string // patient ID within Issuer
	Family    string // family name (DICOM PN first component)
	Given     string // given names (DICOM PN second component, middle names appended by the caller if wanted)
	BirthDate string // YYYYMMDD or YYYY-MM-DD
	Sex       string // M, F or O (or male, female, other)
}

// TokenKind says which fields a token was computed from.
type TokenKind uint8

// Token kinds, in order of decreasing specificity.
const (
	TokenID          TokenKind = 1 // issuer-qualified patient ID
	TokenDemographic TokenKind = 2 // family, given, birth date, sex
	TokenPhonetic    TokenKind = 3 // phonetic family name, birth date, sex
)

var kindNames = [...]string{TokenID: "id", TokenDemographic: "demo", TokenPhonetic: "phon"}

// String returns "id", "demo" or "phon", or "TokenKind(n)".
func (k TokenKind) String() string {
	if k.valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("TokenKind(%d)", uint8(k))
}

func (k TokenKind) valid() bool { return k >= TokenID && k <= TokenPhonetic }

// Token is one blinded patient token.
type Token struct {
	Kind TokenKind
	Sum  [32]byte
}

var (
	_ canon.Marshaler   = Token{}
	_ canon.Unmarshaler = (*Token)(nil)
)

// String returns the token as "<kind>:<64 hex digits>", e.g. "id:3f...".
func (t Token) String() string { return t.Kind.String() + ":" + hex.EncodeToString(t.Sum[:]) }

// ParseToken parses the form written by String. Hex digits must be lower case,
// so that each token has one spelling.
func ParseToken(s string) (Token, error) {
	kind, sum, ok := strings.Cut(s, ":")
	if !ok {
		return Token{}, fmt.Errorf("parse token: missing kind: %w", ErrInvalidToken)
	}
	var t Token
	for k := TokenID; k <= TokenPhonetic; k++ {
		if kindNames[k] == kind {
			t.Kind = k
		}
	}
	if t.Kind == 0 {
		return Token{}, fmt.Errorf("parse token: unknown kind %q: %w", kind, ErrInvalidToken)
	}
	if len(sum) != 2*len(t.Sum) || strings.ToLower(sum) != sum {
		return Token{}, fmt.Errorf("parse token: malformed sum: %w", ErrInvalidToken)
	}
	if _, err := hex.Decode(t.Sum[:], []byte(sum)); err != nil {
		return Token{}, fmt.Errorf("parse token: malformed sum: %w", ErrInvalidToken)
	}
	return t, nil
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (t Token) MarshalText() ([]byte, error) {
	if !t.Kind.valid() {
		return nil, fmt.Errorf("marshal token: kind %d: %w", t.Kind, ErrInvalidToken)
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseToken.
func (t *Token) UnmarshalText(b []byte) error {
	p, err := ParseToken(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// MarshalCanonical implements canon.Marshaler: tag 1 the kind, tag 2 the sum.
func (t Token) MarshalCanonical(e *canon.Encoder) {
	e.Uint(1, uint64(t.Kind))
	e.Bytes(2, t.Sum[:])
}

// UnmarshalCanonical implements canon.Unmarshaler. It rejects unknown kinds
// and sums that are not 32 bytes.
func (t *Token) UnmarshalCanonical(d *canon.Decoder) {
	kind := d.Uint(1)
	sum := d.Bytes(2)
	if d.Err() != nil {
		return
	}
	if kind > 255 || !TokenKind(kind).valid() {
		d.Fail(fmt.Errorf("decode token: kind %d: %w", kind, ErrInvalidToken))
		return
	}
	if len(sum) != len(t.Sum) {
		d.Fail(fmt.Errorf("decode token: sum of %d bytes: %w", len(sum), ErrInvalidToken))
		return
	}
	t.Kind = TokenKind(kind)
	t.Sum = [32]byte(sum)
}

// PatientTokens computes a token for each kind whose fields are all present
// and valid after normalization, in Kind order. A patient without an issuer
// gets no ID token: a bare patient ID names no one.
func PatientTokens(k LinkageKey, p Patient) []Token {
	var out []Token
	issuer, id := NormalizeIssuer(p.Issuer), strings.TrimSpace(p.ID)
	if issuer != "" && id != "" {
		out = append(out, tokenOf(k, TokenID, issuer, id))
	}
	birth, err := NormalizeBirthDate(p.BirthDate)
	sex := NormalizeSex(p.Sex)
	if err != nil || sex == "" {
		return out
	}
	family, given := NormalizeName(p.Family), NormalizeName(p.Given)
	if family != "" && given != "" {
		out = append(out, tokenOf(k, TokenDemographic, family, given, birth, sex))
	}
	if ph := Phonetic(family); ph != "" {
		out = append(out, tokenOf(k, TokenPhonetic, ph, birth, sex))
	}
	return out
}

func tokenOf(k LinkageKey, kind TokenKind, fields ...string) Token {
	mac := hmac.New(sha256.New, k[:])
	mac.Write([]byte(tokenContext))
	mac.Write([]byte{byte(kind)})
	for _, f := range fields {
		mac.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		mac.Write([]byte(f))
	}
	t := Token{Kind: kind}
	mac.Sum(t.Sum[:0])
	return t
}

// foldSpecial spells the Latin letters that have no Unicode decomposition to
// a base letter. Keys are upper case, since folding follows upper-casing.
var foldSpecial = map[rune]string{
	'ß': "SS", 'ẞ': "SS",
	'Æ': "AE", 'Œ': "OE", 'Ø': "O",
	'Ð': "D", 'Đ': "D", 'Þ': "TH",
	'Ł': "L", 'Ħ': "H", 'Ŧ': "T", 'Ŋ': "N",
	'ı': "I", 'ĸ': "K", 'Ə': "E",
}

// NormalizeName returns the letters of a name component as upper-case A to
// Z: compatibility forms and diacritics are folded (é to E, ß to SS, ø to O,
// æ to AE, ł to L ...) and everything else, including spaces, hyphens,
// apostrophes and letters of other scripts, is removed. "Le Bœuf-d'Orsay"
// becomes "LEBOEUFDORSAY". A DICOM PN value ("FAMILY^GIVEN^MIDDLE") is split
// by the caller.
func NormalizeName(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		r = unicode.ToUpper(r)
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case foldSpecial[r] != "":
			b.WriteString(foldSpecial[r])
		}
	}
	return b.String()
}

// NormalizeBirthDate returns a birth date as YYYYMMDD. It accepts YYYYMMDD
// (DICOM DA) and YYYY-MM-DD, surrounded by spaces, for years 0001 to 9999,
// and rejects dates that are not on the calendar (20230230) with an error
// wrapping ErrInvalidBirthDate.
func NormalizeBirthDate(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) == 10 && s[4] == '-' && s[7] == '-' {
		s = s[:4] + s[5:7] + s[8:]
	}
	if len(s) != 8 {
		return "", fmt.Errorf("normalize birth date: not YYYYMMDD or YYYY-MM-DD: %w", ErrInvalidBirthDate)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("normalize birth date: not YYYYMMDD or YYYY-MM-DD: %w", ErrInvalidBirthDate)
		}
		n = n*10 + int(c-'0')
	}
	y, m, d := n/10000, n/100%100, n%100
	if y == 0 || m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return "", fmt.Errorf("normalize birth date: not a calendar date: %w", ErrInvalidBirthDate)
	}
	return s, nil
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// NormalizeSex returns "M", "F" or "O" (DICOM Patient's Sex) for those codes
// or the words male, female and other, in any case and surrounded by spaces;
// anything else, unknown included, gives "".
func NormalizeSex(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "M", "MALE":
		return "M"
	case "F", "FEMALE":
		return "F"
	case "O", "OTHER":
		return "O"
	}
	return ""
}

// NormalizeIssuer returns an issuer of patient IDs trimmed and in upper case.
// Issuers are namespaces that different systems spell in different cases
// ("Hosp-A", "HOSP-A"), so case is not significant; patient IDs, which are,
// are only trimmed.
func NormalizeIssuer(s string) string {
	return strings.ToUpper(strings.TrimSpace(s))
}

// Phonetic returns the American Soundex code of a family name (letter and
// three digits, e.g. "Müller" and "Mueller" both M460), as the US National
// Archives define it: the first letter is kept; B F P V are 1, C G J K Q S X
// Z are 2, D T are 3, L is 4, M N are 5, R is 6; vowels and Y are dropped but
// separate equal codes, H and W are dropped and do not; equal adjacent codes,
// including the first letter's, count once; the code is cut or padded with
// zeros to four characters. The name is normalized with NormalizeName first;
// one with no letters gives "".
//
// Soundex is coarse, but it is specified exactly and reproducible in any
// language, which tokens need above all: every member must compute the same
// code from the same name. It absorbs the usual variation of European
// surnames across records (transliterated umlauts, doubled letters, vowel
// changes: Meyer, Maier, Mayr), and the token pairs it with birth date and
// sex, so its false matches surface as candidates for a person to confirm.
func Phonetic(family string) string {
	s := NormalizeName(family)
	if s == "" {
		return ""
	}
	out := []byte{s[0], '0', '0', '0'}
	n := 1
	last := soundex(s[0])
	for i := 1; i < len(s) && n < 4; i++ {
		c := s[i]
		if c == 'H' || c == 'W' {
			continue
		}
		d := soundex(c)
		if d != 0 && d != last {
			out[n] = d
			n++
		}
		last = d
	}
	return string(out)
}

// soundex returns the digit of an upper-case letter, or 0 for vowels, Y, H, W.
func soundex(c byte) byte {
	switch c {
	case 'B', 'F', 'P', 'V':
		return '1'
	case 'C', 'G', 'J', 'K', 'Q', 'S', 'X', 'Z':
		return '2'
	case 'D', 'T':
		return '3'
	case 'L':
		return '4'
	case 'M', 'N':
		return '5'
	case 'R':
		return '6'
	}
	return 0
}
