package ingest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dicomesh/dicomesh/internal/synth"
)

// TestRunSynthStudies ingests studies from the synthetic generator (files
// that dcmtk accepts) and checks what Parse extracts against what was
// generated.
func TestRunSynthStudies(t *testing.T) {
	in := t.TempDir()
	var studies []synth.Study
	for _, preset := range synth.Presets {
		spec, err := synth.DefaultSpec(preset)
		if err != nil {
			t.Fatal(err)
		}
		spec.Slices, spec.Rows, spec.Cols = 3, 32, 32
		st, err := synth.Write(filepath.Join(in, preset), spec)
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, st)
	}
	for _, st := range studies {
		for _, f := range st.Files {
			data, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data)
			if err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			if m.StudyInstanceUID != st.UID || m.SOPInstanceUID != f.SOPInstanceUID || m.SeriesInstanceUID != f.SeriesInstanceUID ||
				m.PatientID != st.Patient.ID || m.IssuerOfPatientID != st.Patient.Issuer ||
				m.PatientName != st.Patient.Family+"^"+st.Patient.Given || m.PatientBirthDate != st.Patient.BirthDate {
				t.Errorf("%s: parsed %+v", f.Path, m)
			}
		}
	}
	cfg := testConfig(t)
	rep, err := Run(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, st := range studies {
		want += len(st.Files)
	}
	// manifest.json files are not DICOM.
	if rep.Stored != want || rep.Skipped != len(studies) || !rep.OK() || len(rep.Studies) != len(studies) {
		t.Fatalf("stored %d of %d, skipped %d, rejected %v, %d studies", rep.Stored, want, rep.Skipped, rep.Rejected, len(rep.Studies))
	}
}
