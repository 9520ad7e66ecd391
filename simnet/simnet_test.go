package simnet

import (
	"context"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node"
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
	got, err := tertiary.Node.Pull(ctx, node.PullRequest{Manifest: cands[0].ManifestID, Purpose: "TREAT", User: "dr.t"}, nil)
	if err != nil || got.UID != st.UID || got.Instances != len(st.Files) {
		t.Fatalf("pull: %+v %v", got, err)
	}
}

func patient(st synth.Study) crypto.Patient {
	return crypto.Patient{Issuer: st.Patient.Issuer, ID: st.Patient.ID}
}

func sleep() { time.Sleep(50 * time.Millisecond) }
