package simnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/ingest"
	"github.com/dicomesh/dicomesh/registry"
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

// ingestAndFind ingests the study written in dir at owner and waits until
// finder finds it, by patient, in its registry replica.
func ingestAndFind(t *testing.T, owner, finder *node.Node, dir string, st synth.Study) node.Candidate {
	t.Helper()
	ctx := context.Background()
	if _, err := owner.Ingest(ctx, nil, dir); err != nil {
		t.Fatal(err)
	}
	var cands []node.Candidate
	var err error
	for range 200 {
		if cands, err = finder.Find(ctx, patient(st)); err == nil && len(cands) > 0 {
			break
		}
		sleep()
	}
	if len(cands) != 1 {
		t.Fatalf("find: %+v %v", cands, err)
	}
	return cands[0]
}

// TestForwardedWrites: many writes submitted at once at a follower go to
// the leader in batches; each gets its own result, a forged one its own
// rejection, and all are committed.
func TestForwardedWrites(t *testing.T) {
	ctx := context.Background()
	net, err := Start(ctx, Config{Dir: t.TempDir(), Federation: "Valley", Facilities: []string{"A", "B", "C"}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	var follower *node.Node
	for _, m := range net.Members {
		ms, _ := m.Node.Members()
		for _, x := range ms {
			if x.Self && !x.Leader && follower == nil {
				follower = m.Node
			}
		}
	}
	if follower == nil {
		t.Fatal("no follower")
	}
	fed, _ := follower.Registry().Federation()
	const n = 300
	cmds := make([]registry.Signed, n)
	for i := range cmds {
		var tok crypto.Token
		tok.Kind = crypto.TokenID
		tok.Sum[0], tok.Sum[1] = byte(i), byte(i>>8)
		m := registry.Manifest{ID: fmt.Sprintf("fw%04d", i), Owner: follower.FacilityID, Version: 1, Tokens: []crypto.Token{tok},
			Root: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", Bytes: 1, Locator: []byte("x")}
		if cmds[i], err = registry.Sign(follower.Identity, fed, registry.KindPublishManifest, &m, time.Now(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	forged := 7
	cmds[forged] = append(registry.Signed{}, cmds[forged]...)
	cmds[forged][len(cmds[forged])-1] ^= 1
	results := make([]registry.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = follower.Submit(ctx, cmds[i])
		}()
	}
	wg.Wait()
	for i := range cmds {
		if errs[i] != nil {
			t.Fatalf("command %d: %v", i, errs[i])
		}
		if ok := results[i].Code == registry.OK; ok == (i == forged) {
			t.Fatalf("command %d: %+v", i, results[i])
		}
	}
	for i := range cmds {
		_, _, found := follower.Registry().Manifest(fmt.Sprintf("fw%04d", i))
		for range 100 {
			if found || i == forged {
				break
			}
			sleep()
			_, _, found = follower.Registry().Manifest(fmt.Sprintf("fw%04d", i))
		}
		if found == (i == forged) {
			t.Fatalf("manifest %d in the replica: %v", i, found)
		}
	}
}

// TestReadWhileReceiving: while a pull is under way, the instances already
// checked against the owner's manifest are readable at the recipient,
// under its local patient, before the study is committed; the study is
// not in the archive until then.
func TestReadWhileReceiving(t *testing.T) {
	ctx := context.Background()
	net, err := Start(ctx, Config{Dir: t.TempDir(), Federation: "Valley", Facilities: []string{"Rural", "Tertiary"}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	spec, _ := synth.DefaultSpec("ct")
	spec.Slices, spec.Rows, spec.Cols = 40, 128, 128
	dir := t.TempDir()
	st, err := synth.Write(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	rural, tertiary := net.Members[0].Node, net.Members[1].Node
	cand := ingestAndFind(t, rural, tertiary, dir, st)
	// Halfway through, the fetch waits until an instance was read.
	var read []byte
	var committedThen bool
	readDone := make(chan struct{})
	var once sync.Once
	progress := func(p blocks.Progress) {
		if p.Blocks < p.Known/2 || p.Known < 20 {
			return
		}
		once.Do(func() {
			defer close(readDone)
			for range 200 {
				st2, err := tertiary.Study(ctx, st.UID)
				if err == nil && len(st2.Series) > 0 {
					sop := st2.Series[0].Instances[0].SOPInstanceUID
					if rc, err := tertiary.ReadInstance(ctx, st.UID, sop); err == nil {
						read, _ = io.ReadAll(rc)
						rc.Close()
						_, aerr := tertiary.Archive.Study(st.UID)
						committedThen = aerr == nil
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	got, err := tertiary.Pull(ctx, node.PullRequest{Manifest: cand.ManifestID, Purpose: "TREAT", User: "dr.t",
		LocalPatientID: "TC-9", LocalIssuer: "TERTIARY"}, progress)
	<-readDone
	if err != nil || got.Instances != len(st.Files) {
		t.Fatalf("pull: %+v %v", got, err)
	}
	if read == nil || committedThen {
		t.Fatalf("no instance readable before the commit (read %d bytes, committed %v)", len(read), committedThen)
	}
	m, err := ingest.Parse(read)
	if err != nil || m.PatientID != "TC-9" || m.StudyInstanceUID != st.UID {
		t.Fatalf("the instance read during the pull: %+v %v", m, err)
	}
}
