package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/dimse"
)

// datasetOf returns a Part 10 file's data set: what follows the file meta
// group.
func datasetOf(t *testing.T, b []byte) []byte {
	t.Helper()
	glen := binary.LittleEndian.Uint32(b[132+8:])
	return b[132+12+int(glen):]
}

// TestDIMSEWithDCMTK: dcmtk's echoscu and storescu against the node's
// DIMSE service: echo, a study stored instance by instance with its data
// sets byte-identical, an unknown called AE title rejected, and a garbage
// PDU that aborts one association while the service goes on.
// dimseNode serves a test node's DIMSE interface as DICOMESH on a loopback
// port until the test ends.
func dimseNode(t *testing.T) (*Node, string) {
	t.Helper()
	n := openTestNode(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := dimse.NewServer(dimse.Config{AET: "DICOMESH", Store: n, Finder: n, Mover: n, WithActor: WithActor, IdleTimeout: 10 * time.Second})
	go srv.Serve(ctx, l)
	return n, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func TestDIMSEWithDCMTK(t *testing.T) {
	echoscu, err1 := exec.LookPath("echoscu")
	storescu, err2 := exec.LookPath("storescu")
	if err1 != nil || err2 != nil {
		t.Skip("dcmtk is not installed (apt-get install dcmtk)")
	}
	n, port := dimseNode(t)
	ctx := context.Background()

	run := func(name string, args ...string) error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Logf("%s: %s", name, out)
		}
		return err
	}
	if err := run(echoscu, "-aet", "MODALITY", "-aec", "DICOMESH", "127.0.0.1", port); err != nil {
		t.Fatalf("echoscu: %v", err)
	}
	if err := run(echoscu, "-aet", "MODALITY", "-aec", "NOTME", "127.0.0.1", port); err == nil {
		t.Fatal("an association to another called AE title was accepted")
	}

	_, st := synthStudy(t, "ct", func(s *synth.Spec) { s.Slices, s.Rows, s.Cols = 4, 64, 64 })
	args := []string{"-aet", "MODALITY", "-aec", "DICOMESH", "127.0.0.1", port}
	for _, f := range st.Files {
		args = append(args, f.Path)
	}
	if err := run(storescu, args...); err != nil {
		t.Fatalf("storescu: %v", err)
	}
	got, err := waitStudy(n, st.UID, len(st.Files))
	if err != nil {
		t.Fatalf("after C-STORE the node holds %+v %v", got, err)
	}
	for _, f := range st.Files {
		orig, _ := os.ReadFile(f.Path)
		stored := read(t, n, st.UID, f.SOPInstanceUID)
		if !bytes.Equal(datasetOf(t, stored), datasetOf(t, orig)) {
			t.Fatalf("instance %s: the stored data set differs from what was sent", f.SOPInstanceUID)
		}
	}

	// findscu at study and series level finds what was stored.
	if findscu, err := exec.LookPath("findscu"); err == nil {
		out, err := exec.Command(findscu, "-S", "-aet", "PACS", "-aec", "DICOMESH", "-k", "QueryRetrieveLevel=STUDY",
			"-k", "PatientID="+st.Patient.ID, "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", "127.0.0.1", port).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(st.UID)) || !bytes.Contains(out, []byte("IS [4 ]")) {
			t.Fatalf("findscu study level: %v\n%s", err, out)
		}
		out, err = exec.Command(findscu, "-S", "-aet", "PACS", "-aec", "DICOMESH", "-k", "QueryRetrieveLevel=SERIES",
			"-k", "StudyInstanceUID="+st.UID, "-k", "SeriesInstanceUID", "-k", "Modality", "127.0.0.1", port).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(st.Files[0].SeriesInstanceUID)) || !bytes.Contains(out, []byte("[CT]")) {
			t.Fatalf("findscu series level: %v\n%s", err, out)
		}
		out, _ = exec.Command(findscu, "-S", "-aet", "PACS", "-aec", "DICOMESH", "-k", "QueryRetrieveLevel=STUDY",
			"-k", "PatientID=NOBODY", "-k", "StudyInstanceUID", "127.0.0.1", port).CombinedOutput()
		if bytes.Contains(out, []byte(st.UID)) {
			t.Fatalf("findscu for another patient found the study:\n%s", out)
		}
	}

	// The node pushes the study into dcmtk's storescp (as it would into
	// the local PACS): every data set arrives as stored.
	if storescp, err := exec.LookPath("storescp"); err == nil {
		out := t.TempDir()
		scpPort := freePort(t)
		scp := exec.Command(storescp, "-aet", "PACS", "-od", out, strconv.Itoa(scpPort))
		if err := scp.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { scp.Process.Kill(); scp.Wait() }()
		waitPort(t, scpPort)
		res, err := n.Push(ctx, st.UID, dimse.Destination{AET: "PACS", Host: "127.0.0.1", Port: scpPort})
		if err != nil || res.Sent != len(st.Files) || res.Failed != 0 {
			t.Fatalf("push: %+v %v", res, err)
		}
		received, _ := os.ReadDir(out)
		if len(received) != len(st.Files) {
			t.Fatalf("storescp received %d of %d files", len(received), len(st.Files))
		}
		for _, e := range received {
			b, _ := os.ReadFile(out + "/" + e.Name())
			found := false
			for _, f := range st.Files {
				orig, _ := os.ReadFile(f.Path)
				if bytes.Equal(datasetOf(t, b), datasetOf(t, orig)) {
					found = true
				}
			}
			if !found {
				t.Fatalf("%s: a data set that was not sent", e.Name())
			}
		}
	}

	// A PACS asks the node to C-MOVE the study to a destination it knows
	// by AE title: dcmtk's movescu, with storescp as the destination.
	movescu, err3 := exec.LookPath("movescu")
	storescp, err4 := exec.LookPath("storescp")
	if err3 == nil && err4 == nil {
		out := t.TempDir()
		scpPort := freePort(t)
		if err := AddPACS(n.Home, PACS{Name: "viewer", AET: "MOVEDEST", Host: "127.0.0.1", Port: scpPort}); err != nil {
			t.Fatal(err)
		}
		scp := exec.Command(storescp, "-aet", "MOVEDEST", "-od", out, strconv.Itoa(scpPort))
		if err := scp.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { scp.Process.Kill(); scp.Wait() }()
		waitPort(t, scpPort)
		if err := run(movescu, "-S", "-aet", "PACS", "-aec", "DICOMESH", "-aem", "MOVEDEST", "-k", "QueryRetrieveLevel=STUDY",
			"-k", "StudyInstanceUID="+st.UID, "127.0.0.1", port); err != nil {
			t.Fatalf("movescu: %v", err)
		}
		if received, _ := os.ReadDir(out); len(received) != len(st.Files) {
			t.Fatalf("the move destination received %d of %d files", len(received), len(st.Files))
		}
		if err := run(movescu, "-S", "-aet", "PACS", "-aec", "DICOMESH", "-aem", "UNKNOWN", "-k", "QueryRetrieveLevel=STUDY",
			"-k", "StudyInstanceUID="+st.UID, "127.0.0.1", port); err == nil {
			t.Fatal("a move to an unknown destination succeeded")
		}
	}

	// Garbage: a PDU that declares 4 GiB, then nothing.
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0x01, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [16]byte
	c.Read(b[:])
	c.Close()
	if err := run(echoscu, "-aet", "MODALITY", "-aec", "DICOMESH", "127.0.0.1", port); err != nil {
		t.Fatalf("echoscu after a garbage PDU: %v", err)
	}
}

// waitPort waits until something listens on a loopback port.
func waitPort(t *testing.T, port int) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d", port)
}

// waitStudy waits until the study has the given number of instances: an
// association's instances are committed after its release is answered.
func waitStudy(n *Node, uid string, instances int) (archive.Study, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := n.Archive.Study(uid)
		if err == nil && got.Instances == instances || time.Now().After(deadline) {
			if err == nil && got.Instances != instances {
				err = fmt.Errorf("%d instances, want %d", got.Instances, instances)
			}
			return got, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCStoreParallelAssociations: a sender splits a study over four
// associations at once (as PACS do to send faster): each association's
// commit waits for the others' on the same study, and the study ends up
// whole, each data set as sent.
func TestCStoreParallelAssociations(t *testing.T) {
	storescu, err := exec.LookPath("storescu")
	if err != nil {
		t.Skip("dcmtk is not installed (apt-get install dcmtk)")
	}
	n, port := dimseNode(t)
	_, st := synthStudy(t, "ct", func(s *synth.Spec) { s.Slices, s.Rows, s.Cols = 16, 64, 64 })
	errs := make(chan error, 4)
	for i := range 4 {
		args := []string{"-aet", "MODALITY", "-aec", "DICOMESH", "127.0.0.1", port}
		for _, f := range st.Files[i*4 : i*4+4] {
			args = append(args, f.Path)
		}
		go func() {
			out, err := exec.Command(storescu, args...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("storescu: %v\n%s", err, out)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := waitStudy(n, st.UID, len(st.Files)); err != nil {
		t.Fatalf("after four associations: %v", err)
	}
	for _, f := range st.Files {
		orig, _ := os.ReadFile(f.Path)
		if !bytes.Equal(datasetOf(t, read(t, n, st.UID, f.SOPInstanceUID)), datasetOf(t, orig)) {
			t.Fatalf("instance %s: the stored data set differs from what was sent", f.SOPInstanceUID)
		}
	}
	// The last commit empties its spool folder just after the study is
	// complete in the archive.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		es, _ := os.ReadDir(n.Home.Path("spool"))
		if len(es) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d associations left in the spool", len(es))
		}
	}
}

// TestSpoolCommitAtShutdown: an association's commit that waits for its
// study (held by another writer) gives up when the server stops, so that
// the node stops; the spool keeps the acknowledged instance, and the next
// start commits it.
func TestSpoolCommitAtShutdown(t *testing.T) {
	storescu, err := exec.LookPath("storescu")
	if err != nil {
		t.Skip("dcmtk is not installed (apt-get install dcmtk)")
	}
	n := openTestNode(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := dimse.NewServer(dimse.Config{AET: "DICOMESH", Store: n, WithActor: WithActor, IdleTimeout: 10 * time.Second})
	served := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(served) }()
	_, st := synthStudy(t, "cr", nil)
	other, err := n.Archive.Begin(st.UID)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	if out, err := exec.Command(storescu, "-aet", "MODALITY", "-aec", "DICOMESH", "127.0.0.1", port, st.Files[0].Path).CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	cancel()
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop while an association's commit waited")
	}
	other.Rollback()
	if _, err := n.Archive.Study(st.UID); err == nil {
		t.Fatal("the study was committed while another writer held it")
	}
	n.recoverSpool(context.Background())
	if got, err := n.Archive.Study(st.UID); err != nil || got.Instances != 1 {
		t.Fatalf("after the next start's recovery: %v", err)
	}
}

// TestSpoolRecovery: instances acknowledged (spooled) but not yet
// committed when the node stops are committed by the next run; the spool
// holds no readable patient data.
func TestSpoolRecovery(t *testing.T) {
	n := openTestNode(t)
	_, st := synthStudy(t, "cr", nil)
	data, _ := os.ReadFile(st.Files[0].Path)
	if err := n.Spool(context.Background(), "assoc1", data); err != nil {
		t.Fatal(err)
	}
	// An instance cut off by its association's end is discarded: its file
	// reads as unused.
	sp, err := n.BeginSpool(context.Background(), "assoc1")
	if err != nil {
		t.Fatal(err)
	}
	sp.Write(data[:len(data)/2])
	sp.Discard()
	es, _ := os.ReadDir(n.spoolDir("assoc1"))
	var used, empty []string
	for _, e := range es {
		if e.Name() == spoolKeyFile {
			continue
		}
		if info, _ := e.Info(); info.Size() > 0 {
			used = append(used, filepath.Join(n.spoolDir("assoc1"), e.Name()))
		} else {
			empty = append(empty, filepath.Join(n.spoolDir("assoc1"), e.Name()))
		}
	}
	if len(used) != 1 || len(empty) == 0 {
		t.Fatalf("%d spool files written, %d made ahead", len(used), len(empty))
	}
	b, _ := os.ReadFile(used[0])
	if bytes.Contains(b, []byte(st.Patient.ID)) {
		t.Fatal("the spool holds the patient ID in clear")
	}
	// The association's key is sealed to the facility, not kept in clear:
	// another facility's identity cannot open it.
	if _, err := n.openSpoolKey(n.spoolDir("assoc1")); err != nil {
		t.Fatalf("the spool key does not open: %v", err)
	}
	other := openTestNode(t)
	if _, err := other.openSpoolKey(n.spoolDir("assoc1")); err == nil {
		t.Fatal("another facility opened the spool key")
	}
	// A spooled instance with one byte changed is not taken for one.
	aead, _ := n.openSpoolKey(n.spoolDir("assoc1"))
	tampered := filepath.Join(t.TempDir(), "x.dcm.enc")
	bad := bytes.Clone(b)
	bad[len(bad)/2] ^= 1
	os.WriteFile(tampered, bad, 0o600)
	if _, err := n.readSpooled(tampered, aead); err == nil {
		t.Fatal("a changed spool file decrypted")
	}
	// A write that was never acknowledged, cut short by the crash: the
	// first half of an encrypted instance in a file made ahead.
	os.WriteFile(empty[0], b[:len(b)/2], 0o600)
	// As if the process died here: a new node on the same home.
	home := n.Home
	n.Close()
	n2, err := Open(home, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	n2.recoverSpool(context.Background())
	if got, err := n2.Archive.Study(st.UID); err != nil || got.Instances != 1 {
		t.Fatalf("after recovery: %+v %v", got, err)
	}
	if _, err := os.Stat(n2.spoolDir("assoc1")); !os.IsNotExist(err) {
		t.Fatal("the spool was not emptied")
	}
	if aside, _ := os.ReadDir(home.Path("spool-damaged")); len(aside) != 1 {
		t.Fatalf("%d files set aside, want the one cut short", len(aside))
	}
}

// TestSpoolLegacyFiles: instances spooled by earlier versions, in each of
// their formats, are committed with the new ones.
func TestSpoolLegacyFiles(t *testing.T) {
	n := openTestNode(t)
	_, st := synthStudy(t, "mr", func(s *synth.Spec) { s.Slices, s.Rows, s.Cols = 4, 32, 32 })
	first, _ := os.ReadFile(st.Files[0].Path)
	if err := n.Spool(context.Background(), "assoc1", first); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(st.Files[1].Path)
	var old bytes.Buffer
	w, _ := age.Encrypt(&old, n.Identity.Recipient())
	w.Write(second)
	w.Close()
	if err := os.WriteFile(filepath.Join(n.spoolDir("assoc1"), "0a0b0c-000.age"), old.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The version before: one XChaCha20-Poly1305 seal under the
	// association's key.
	third, _ := os.ReadFile(st.Files[2].Path)
	key, err := n.openSpoolKey(n.spoolDir("assoc1"))
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, key.v1.NonceSize())
	v1 := key.v1.Seal(append([]byte(spoolMagic1), nonce...), nonce, third, []byte(spoolAD1))
	if err := os.WriteFile(filepath.Join(n.spoolDir("assoc1"), "0a0b0c-001"+spoolSuffix), v1, 0o600); err != nil {
		t.Fatal(err)
	}
	// The version before that: an age file of the instance, uncompressed,
	// to the association's key.
	fourth, _ := os.ReadFile(st.Files[3].Path)
	v2 := bytes.NewBufferString(spoolMagic2)
	w, err = key.sym.Encrypt(v2)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(fourth)
	w.Close()
	if err := os.WriteFile(filepath.Join(n.spoolDir("assoc1"), "0a0b0c-002"+spoolSuffix), v2.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.CommitSpool(context.Background(), "assoc1"); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Archive.Study(st.UID); err != nil || got.Instances != 4 {
		t.Fatalf("after the commit: %+v %v", got, err)
	}
}

// TestSpoolCommitWaitsForBusyStudy: an association's commit finds its
// study open by another writer (another association of the same study, a
// STOW-RS request): it waits for it, then commits, instead of leaving the
// acknowledged instances in the spool until the next start.
func TestSpoolCommitWaitsForBusyStudy(t *testing.T) {
	n := openTestNode(t)
	_, st := synthStudy(t, "mr", func(s *synth.Spec) { s.Slices, s.Rows, s.Cols = 3, 32, 32 })
	for i, f := range st.Files[:3] {
		data, _ := os.ReadFile(f.Path)
		if err := n.Spool(context.Background(), fmt.Sprint("assoc", i), data); err != nil {
			t.Fatal(err)
		}
	}
	other, err := n.Archive.Begin(st.UID)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- n.CommitSpool(context.Background(), "assoc0") }()
	select {
	case err := <-done:
		t.Fatalf("the commit returned (%v) while the study was open", err)
	case <-time.After(200 * time.Millisecond):
	}
	other.Rollback()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Two associations of the same study, committed at once.
	go func() { done <- n.CommitSpool(context.Background(), "assoc1") }()
	go func() { done <- n.CommitSpool(context.Background(), "assoc2") }()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got, err := n.Archive.Study(st.UID); err != nil || got.Instances != 3 {
		t.Fatalf("after the commits: %+v %v", got, err)
	}
	for i := range 3 {
		if _, err := os.Stat(n.spoolDir(fmt.Sprint("assoc", i))); !os.IsNotExist(err) {
			t.Fatalf("the spool of assoc%d was not emptied", i)
		}
	}
	// A commit that may not wait longer gives up and keeps the spool.
	data, _ := os.ReadFile(st.Files[0].Path)
	if err := n.Spool(context.Background(), "assoc3", data); err != nil {
		t.Fatal(err)
	}
	other, _ = n.Archive.Begin(st.UID)
	defer other.Rollback()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.CommitSpool(ctx, "assoc3"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled commit of a busy study: %v", err)
	}
	if _, err := os.Stat(n.spoolDir("assoc3")); err != nil {
		t.Fatalf("the spool was not kept: %v", err)
	}
}
