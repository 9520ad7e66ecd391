package crypto

import (
	"testing"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

func BenchmarkPatientTokens(b *testing.B) {
	p := Patient{Issuer: "HOSP-A", ID: "12345", Family: "Müller-Lüdenscheidt", Given: "José María", BirthDate: "1975-02-28", Sex: "F"}
	for b.Loop() {
		PatientTokens(LinkageKey{1}, p)
	}
}

func BenchmarkEnvelopeVerify(b *testing.B) {
	id, err := GenerateIdentity(zeroReader{})
	if err != nil {
		b.Fatal(err)
	}
	enc := canon.Marshal(SignEnvelope(id, "registry/command", make([]byte, 512)))
	for b.Loop() {
		var e Envelope
		if err := canon.Unmarshal(enc, &e); err != nil {
			b.Fatal(err)
		}
		if err := e.Verify("registry/command"); err != nil {
			b.Fatal(err)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
