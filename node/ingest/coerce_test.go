package ingest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/internal/synth"
)

func synthFile(t testing.TB) []byte {
	t.Helper()
	spec, err := synth.DefaultSpec("ct")
	if err != nil {
		t.Fatal(err)
	}
	spec.Slices, spec.Rows, spec.Cols = 1, 16, 16
	var out []byte
	if err := synth.Instances(spec, func(_ string, data []byte) error { out = data; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCoerce(t *testing.T) {
	orig := synthFile(t)
	before, err := Parse(orig)
	if err != nil {
		t.Fatal(err)
	}
	c := Coercion{PatientID: "LOCAL42", Issuer: "TERTIARY", PatientName: "DOE^JOHN^Q", Source: "rural", System: "dicomesh",
		Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	out, err := Coerce(orig, c)
	if err != nil {
		t.Fatal(err)
	}
	after, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if after.PatientID != "LOCAL42" || after.IssuerOfPatientID != "TERTIARY" || after.PatientName != "DOE^JOHN^Q" {
		t.Fatalf("coerced to %+v", after)
	}
	if after.SOPInstanceUID != before.SOPInstanceUID || after.StudyInstanceUID != before.StudyInstanceUID ||
		after.SeriesInstanceUID != before.SeriesInstanceUID || after.AccessionNumber != before.AccessionNumber {
		t.Fatalf("UIDs or accession changed: %+v", after)
	}
	// Everything from the pixel data on is byte for byte the same.
	pix := []byte{0xE0, 0x7F, 0x10, 0x00}
	i, j := bytes.LastIndex(orig, pix), bytes.LastIndex(out, pix)
	if i < 0 || !bytes.Equal(orig[i:], out[j:]) {
		t.Fatal("pixel data changed")
	}
	// The original values are kept, in order, in the Original Attributes
	// Sequence; a second coercion adds a second item.
	for _, v := range []string{before.PatientID, before.IssuerOfPatientID, before.PatientName, "COERCE", "rural"} {
		if !bytes.Contains(out, []byte(v)) {
			t.Errorf("original value %q not kept", v)
		}
	}
	out2, err := Coerce(out, Coercion{PatientID: "LOCAL43", Source: "regional", System: "dicomesh"})
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out2, []byte("COERCE")); n != 2 {
		t.Fatalf("%d modification items after two coercions", n)
	}
	if m, _ := Parse(out2); m.PatientID != "LOCAL43" || m.PatientName != "DOE^JOHN^Q" {
		t.Fatalf("second coercion: %+v", m)
	}
	if _, err := Coerce(orig, Coercion{PatientID: strings.Repeat("x", 65)}); err == nil {
		t.Error("an overlong patient ID was written")
	}
	if same, _ := Coerce(orig, Coercion{}); !bytes.Equal(same, orig) {
		t.Error("an empty coercion changed the file")
	}
	checkWithDCMTK(t, out2)
}

// checkWithDCMTK has dcmtk's dcmdump read the result, when it is installed:
// an independent parser that must find the new values and the sequence.
func checkWithDCMTK(t *testing.T, data []byte) {
	t.Helper()
	dump, err := exec.LookPath("dcmdump")
	if err != nil {
		t.Log("dcmdump not installed: skipping the dcmtk check")
		return
	}
	p := filepath.Join(t.TempDir(), "x.dcm")
	os.WriteFile(p, data, 0o600)
	out, err := exec.Command(dump, "-q", "+E", p).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump: %v\n%s", err, out)
	}
	for _, want := range []string{"(0010,0020) LO [LOCAL43]", "(0400,0561) SQ", "(0400,0565) CS [COERCE]", "(0400,0550) SQ", "(0400,0564) LO [regional]"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("dcmdump does not show %q:\n%s", want, out)
		}
	}
}

// TestCoerceImplicit runs the coercion on an implicit VR little endian file
// made by dcmtk's dcmconv, when it is installed.
func TestCoerceImplicit(t *testing.T) {
	conv, err := exec.LookPath("dcmconv")
	if err != nil {
		t.Skip("dcmconv not installed")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
	os.WriteFile(in, synthFile(t), 0o600)
	if b, err := exec.Command(conv, "+ti", in, out).CombinedOutput(); err != nil {
		t.Fatalf("dcmconv: %v\n%s", err, b)
	}
	data, _ := os.ReadFile(out)
	res, err := Coerce(data, Coercion{PatientID: "LOCAL43", Source: "regional", System: "dicomesh"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := Parse(res); err != nil || m.PatientID != "LOCAL43" || m.TransferSyntaxUID != "1.2.840.10008.1.2" {
		t.Fatalf("%+v %v", m, err)
	}
	checkWithDCMTK(t, res)
}

// FuzzCoerce: coercing any input never panics, and what it produces passes
// the parser with the new patient ID.
func FuzzCoerce(f *testing.F) {
	f.Add(synthFile(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Coerce(data, Coercion{PatientID: "P1", Issuer: "I", Source: "s", System: "x"})
		if err != nil {
			return
		}
		m, err := Parse(out)
		if err != nil {
			t.Fatalf("coerced file does not parse: %v", err)
		}
		if m.PatientID != "P1" {
			t.Fatalf("patient ID %q after coercion", m.PatientID)
		}
	})
}
