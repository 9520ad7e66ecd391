package crypto

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

type tokenVector struct {
	Name  string `json:"name"`
	Key   string `json:"key"`
	Input struct {
		Issuer, ID, Family, Given string
		BirthDate                 string `json:"birth_date"`
		Sex                       string
	} `json:"input"`
	Normalized struct {
		Issuer, ID, Family, Given string
		BirthDate                 string `json:"birth_date"`
		Sex, Phonetic             string
	} `json:"normalized"`
	Tokens []string `json:"tokens"`
}

// TestTokenVectors checks tokens against vectors computed by
// testdata/tokens.py, an independent implementation of the format.
func TestTokenVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Cases []tokenVector }
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) < 10 {
		t.Fatalf("only %d vectors", len(file.Cases))
	}
	for _, v := range file.Cases {
		t.Run(v.Name, func(t *testing.T) {
			in, want := v.Input, v.Normalized
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s: got %q, want %q", what, got, want)
				}
			}
			check("issuer", NormalizeIssuer(in.Issuer), want.Issuer)
			check("id", strings.TrimSpace(in.ID), want.ID)
			check("family", NormalizeName(in.Family), want.Family)
			check("given", NormalizeName(in.Given), want.Given)
			check("sex", NormalizeSex(in.Sex), want.Sex)
			check("phonetic", Phonetic(in.Family), want.Phonetic)
			birth, err := NormalizeBirthDate(in.BirthDate)
			if want.BirthDate == "" {
				if !errors.Is(err, ErrInvalidBirthDate) {
					t.Errorf("birth date %q: got %q, %v; want ErrInvalidBirthDate", in.BirthDate, birth, err)
				}
			} else {
				check("birth date", birth, want.BirthDate)
			}

			keyBytes, err := hex.DecodeString(v.Key)
			if err != nil || len(keyBytes) != 32 {
				t.Fatalf("bad key %q", v.Key)
			}
			var got []string
			for _, tok := range PatientTokens(LinkageKey(keyBytes), Patient{
				Issuer: in.Issuer, ID: in.ID, Family: in.Family, Given: in.Given,
				BirthDate: in.BirthDate, Sex: in.Sex,
			}) {
				got = append(got, tok.String())
			}
			if !slices.Equal(got, v.Tokens) {
				t.Errorf("tokens:\n got %q\nwant %q", got, v.Tokens)
			}
		})
	}
}

func TestTokensSeparateFieldsAndKinds(t *testing.T) {
	var k LinkageKey
	a := PatientTokens(k, Patient{Issuer: "AB", ID: "C", Family: "AB", Given: "C", BirthDate: "19800115", Sex: "M"})
	b := PatientTokens(k, Patient{Issuer: "A", ID: "BC", Family: "A", Given: "BC", BirthDate: "19800115", Sex: "M"})
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("got %d and %d tokens", len(a), len(b))
	}
	for i := range a {
		if a[i].Sum == b[i].Sum {
			t.Errorf("%v token: shifting the field boundary kept the sum", a[i].Kind)
		}
	}
	// The same field values under another kind give another sum.
	if tokenOf(k, TokenID, "X", "Y").Sum == tokenOf(k, TokenDemographic, "X", "Y").Sum {
		t.Error("kinds are not separated")
	}
	k[0] = 1
	if c := PatientTokens(k, Patient{Issuer: "AB", ID: "C"}); c[0].Sum == a[0].Sum {
		t.Error("another linkage key gave the same token")
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"Le Bœuf-d'Orsay":       "LEBOEUFDORSAY",
		"GARCÍA MÁRQUEZ":        "GARCIAMARQUEZ",
		"Ørsted":                "ORSTED",
		"Þórðarson":             "THORDARSON",
		"Đorđević":              "DORDEVIC",
		"Yılmaz":                "YILMAZ",
		"İnönü":                 "INONU",
		"Ｓｍｉｔｈ":                 "SMITH", // full width
		"Çelik  Şahin":          "CELIKSAHIN",
		"Smith3rd":              "SMITHRD",
		"Doe^John":              "DOEJOHN",
		"Ĳsselmeer":             "IJSSELMEER",
		"ПЕТРОВ":                "",
		"Aßmann":                "ASSMANN",
		"\u0065\u0301":          "E", // decomposed input
		"\xff\xfeinvalid utf-8": "INVALIDUTF",
	} {
		if got := NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPhonetic(t *testing.T) {
	// Examples from the US National Archives' description of Soundex, and
	// spelling variants that must agree.
	for in, want := range map[string]string{
		"Robert": "R163", "Rupert": "R163", "Rubin": "R150",
		"Ashcraft": "A261", "Ashcroft": "A261", "Tymczak": "T522",
		"Pfister": "P236", "Honeyman": "H555", "Gutierrez": "G362",
		"Jackson": "J250", "Washington": "W252", "Lee": "L000",
		"Müller": "M460", "Mueller": "M460", "Meyer": "M600", "Maier": "M600", "Mayr": "M600",
		"Schmidt": "S530", "Schmitt": "S530", "": "", "-": "",
	} {
		if got := Phonetic(in); got != want {
			t.Errorf("Phonetic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeBirthDate(t *testing.T) {
	for in, want := range map[string]string{
		"19800115": "19800115", "1980-01-15": "19800115", " 19800115 ": "19800115",
		"20000229": "20000229", "20240229": "20240229", "00010101": "00010101", "99991231": "99991231",
		"19000229": "", "20230229": "", "19800230": "", "19800431": "", "19801301": "", "19800001": "",
		"19800100": "", "00000101": "", "1980-1-15": "", "1980/01/15": "", "198001150": "", "": "",
		"1980-0115": "", "+1980115": "", "１９８００１１５": "",
	} {
		got, err := NormalizeBirthDate(in)
		if want == "" {
			if !errors.Is(err, ErrInvalidBirthDate) || got != "" {
				t.Errorf("NormalizeBirthDate(%q) = %q, %v; want ErrInvalidBirthDate", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeBirthDate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestNormalizeSexAndIssuer(t *testing.T) {
	for in, want := range map[string]string{
		"M": "M", "m": "M", " male ": "M", "F": "F", "Female": "F", "O": "O", "other": "O",
		"U": "", "unknown": "", "": "", "X": "", "MF": "",
	} {
		if got := NormalizeSex(in); got != want {
			t.Errorf("NormalizeSex(%q) = %q, want %q", in, got, want)
		}
	}
	if got := NormalizeIssuer("  Hosp-A\t"); got != "HOSP-A" {
		t.Errorf("NormalizeIssuer = %q", got)
	}
}

func TestTokenEncodings(t *testing.T) {
	toks := PatientTokens(LinkageKey{1}, Patient{Issuer: "H", ID: "1", Family: "Doe", Given: "Jane", BirthDate: "19700101", Sex: "F"})
	if len(toks) != 3 {
		t.Fatalf("got %d tokens", len(toks))
	}
	for i, want := range []string{"id:", "demo:", "phon:"} {
		tok := toks[i]
		s := tok.String()
		if !strings.HasPrefix(s, want) || len(s) != len(want)+64 {
			t.Errorf("String() = %q", s)
		}
		if back, err := ParseToken(s); err != nil || back != tok {
			t.Errorf("ParseToken(%q) = %v, %v", s, back, err)
		}
		text, err := tok.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var fromText Token
		if err := fromText.UnmarshalText(text); err != nil || fromText != tok {
			t.Errorf("text round trip: %v, %v", fromText, err)
		}
		var fromCanon Token
		if err := canon.Unmarshal(canon.Marshal(tok), &fromCanon); err != nil || fromCanon != tok {
			t.Errorf("canonical round trip: %v, %v", fromCanon, err)
		}
	}
	sum := strings.Repeat("ab", 32)
	for _, bad := range []string{
		"", "id", "id:", "xx:" + sum, "ID:" + sum, "id:" + strings.ToUpper(sum), "id:" + sum[:62],
		"id:" + sum + "ab", "id:" + sum[:62] + "zz", "id:" + sum + "\n", " id:" + sum,
	} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ParseToken(%q): %v", bad, err)
		}
	}
	if _, err := (Token{Kind: 9}).MarshalText(); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("MarshalText of kind 9: %v", err)
	}
	for name, h := range map[string]string{
		"kind 4":      "0204" + "0520" + sum,
		"kind 256":    "028002" + "0520" + sum,
		"short sum":   "0201" + "051f" + sum[:62],
		"missing sum": "0201",
		"no kind":     "0520" + sum,
	} {
		b, _ := hex.DecodeString(h)
		var tok Token
		if err := canon.Unmarshal(b, &tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLinkageKeyIsRedacted(t *testing.T) {
	k := LinkageKey{0xab, 0xcd}
	for _, s := range []string{k.String(), k.GoString()} {
		if strings.Contains(strings.ToLower(s), "abcd") || strings.Contains(s, "171") {
			t.Errorf("key leaked: %s", s)
		}
	}
}
