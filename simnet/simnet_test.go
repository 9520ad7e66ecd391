package simnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// TestStart: three facilities form a federation; a study ingested at one is
// found and pulled by another.
func TestStart(t *testing.T) {
	ctx := context.Background()
	net, err := Start(ctx, Config{Dir: t.TempDir(), Federation: "Valley", Facilities: []string{"Rural", "Regional", "Tertiary"}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	spec, _ := synth.DefaultSpec("cr")
	dir := t.TempDir()
	st, err := synth.Write(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	rural, tertiary := net.Members[0], net.Members[2]
	if _, err := rural.Node.Ingest(ctx, nil, dir); err != nil {
		t.Fatal(err)
	}
	var cands []node.Candidate
	for range 200 {
		cands, err = tertiary.Node.Find(ctx, patient(st))
		if err == nil && len(cands) > 0 {
			break
		}
		sleep()
	}
	if len(cands) != 1 || cands[0].Facility != "Rural" {
		t.Fatalf("find: %+v %v", cands, err)
	}
	got, err := tertiary.Node.Pull(ctx, node.PullRequest{Manifest: cands[0].ManifestID, Purpose: "TREAT", User: "dr.t",
		LocalPatientID: "TC-1", LocalIssuer: "TERTIARY"}, nil)
	if err != nil || got.UID != st.UID || got.Instances != len(st.Files) {
		t.Fatalf("pull: %+v %v", got, err)
	}
	// Served locally under the tertiary center's patient ID, the
	// originals kept; the stored study itself is unchanged.
	rc, err := tertiary.Node.ReadInstance(ctx, st.UID, st.Files[0].SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	m, err := ingest.Parse(b)
	if err != nil || m.PatientID != "TC-1" || m.IssuerOfPatientID != "TERTIARY" || !bytes.Contains(b, []byte(st.Patient.ID)) {
		t.Fatalf("served instance: %+v %v", m, err)
	}
	raw, _ := tertiary.Node.Archive.ReadInstance(ctx, st.UID, st.Files[0].SOPInstanceUID)
	rb, _ := io.ReadAll(raw)
	raw.Close()
	if sum := sha256.Sum256(rb); sum != st.Files[0].SHA256 {
		t.Fatal("the stored instance is not the one the owner sent")
	}
}

func patient(st synth.Study) crypto.Patient {
	return crypto.Patient{Issuer: st.Patient.Issuer, ID: st.Patient.ID}
}

func sleep() { time.Sleep(50 * time.Millisecond) }
