package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/dicomesh/dicomesh/crypto"
)

const marker = "ZZMARKERPATIENT"

func newOwner(t testing.TB) *crypto.Identity {
	t.Helper()
	id, err := crypto.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func open(t testing.TB, dir string, owner *crypto.Identity) *Archive {
	t.Helper()
	a, err := Open(Config{Dir: dir, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// instance returns metadata and bytes for a synthetic instance: a header
// carrying the marker name, then compressible 16-bit "pixels".
func instance(study string, series, n int) (InstanceMeta, []byte) {
	return instanceV(study, series, n, 1)
}

// instanceV is instance with other bytes for every v > 1 (a corrected
// instance under the same SOP Instance UID).
func instanceV(study string, series, n, v int) (InstanceMeta, []byte) {
	m := InstanceMeta{
		SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", SOPInstanceUID: fmt.Sprintf("%s.%d.%d", study, series, n),
		SeriesInstanceUID: fmt.Sprintf("%s.%d", study, series), StudyInstanceUID: study,
		TransferSyntaxUID: "1.2.840.10008.1.2.1", PatientID: "MRN1", IssuerOfPatientID: "HOSP",
		PatientName: marker + "^JANE", PatientBirthDate: "19600101", PatientSex: "F", StudyDate: "20260101",
		Modality: "CT", BodyPartExamined: "CHEST", SeriesNumber: series, InstanceNumber: n,
	}
	data := []byte("DICM header " + marker + " " + m.SOPInstanceUID + "\n")
	noise := make([]byte, 64<<10)
	mrand.NewChaCha8(sha256.Sum256([]byte(fmt.Sprint(m.SOPInstanceUID, v)))).Read(noise)
	for i := range 200 << 10 {
		data = append(data, byte(i/512), noise[i%len(noise)]&0x0f)
	}
	return m, data
}

func store(t testing.TB, a *Archive, study string, series, count int) map[string][]byte {
	t.Helper()
	tx, err := a.Begin(study)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for s := 1; s <= series; s++ {
		for n := 1; n <= count; n++ {
			m, data := instance(study, s, n)
			if added, err := tx.Add(context.Background(), m, data); err != nil || !added {
				t.Fatalf("add: added=%v err=%v", added, err)
			}
			out[m.SOPInstanceUID] = data
		}
	}
	if _, err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out
}

func readAll(t testing.TB, a *Archive, study, sop string) []byte {
	t.Helper()
	rc, err := a.ReadInstance(context.Background(), study, sop)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripAcrossReopen(t *testing.T) {
	dir, owner := t.TempDir(), newOwner(t)
	a := open(t, dir, owner)
	want := store(t, a, "1.2.3", 3, 4)
	a.Close()

	a = open(t, dir, owner)
	defer a.Close()
	st, err := a.Study("1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances != 12 || len(st.Series) != 3 || st.Version != 1 || st.PatientID != "MRN1" || st.Modalities[0] != "CT" {
		t.Fatalf("study record: %+v", st)
	}
	for sop, data := range want {
		if !bytes.Equal(readAll(t, a, "1.2.3", sop), data) {
			t.Fatalf("instance %s differs after round trip", sop)
		}
	}
	out := t.TempDir()
	n, err := a.Export(context.Background(), "1.2.3", out)
	if err != nil || n != 12 {
		t.Fatalf("export: n=%d err=%v", n, err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "1.2.3.2", "1.2.3.2.3.dcm"))
	if !bytes.Equal(got, want["1.2.3.2.3"]) {
		t.Fatal("exported file differs")
	}
}

func TestAnotherOwnerCannotOpen(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, newOwner(t))
	store(t, a, "1.2.3", 1, 1)
	a.Close()
	if _, err := Open(Config{Dir: dir, Owner: newOwner(t)}); err == nil {
		t.Fatal("an archive opened with another facility's keys")
	}
}

func TestDuplicateAndNewVersion(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	store(t, a, "1.2.3", 1, 3)
	v1, _ := a.Study("1.2.3")
	before := a.bs.puts.Load()

	tx, _ := a.Begin("1.2.3")
	m, data := instance("1.2.3", 1, 2)
	if added, err := tx.Add(context.Background(), m, data); err != nil || added {
		t.Fatalf("re-adding the same instance: added=%v err=%v", added, err)
	}
	st, err := tx.Commit(context.Background())
	if err != nil || st.Version != 1 || st.Root != v1.Root {
		t.Fatalf("a commit that added nothing changed the study: %+v %v", st, err)
	}

	tx, _ = a.Begin("1.2.3")
	m, data = instance("1.2.3", 1, 4)
	if added, err := tx.Add(context.Background(), m, data); err != nil || !added {
		t.Fatal(added, err)
	}
	st, err = tx.Commit(context.Background())
	if err != nil || st.Version != 2 || st.Instances != 4 {
		t.Fatalf("new version: %+v %v", st, err)
	}
	// The old instances' blocks are reused: version 2 writes one instance
	// block, a new manifest block and a new root.
	if wrote := a.bs.puts.Load() - before; wrote != 3 {
		t.Errorf("version 2 wrote %d blocks, want 3 (old instances reused)", wrote)
	}
	for i, in := range v1.Series[0].Instances {
		if got := st.Series[0].Instances[i]; got.Root != in.Root {
			t.Errorf("instance %s: version 2 root %s, version 1 %s", in.SOPInstanceUID, got.Root, in.Root)
		}
	}
	// Version 1's root and manifest are gone; everything left is reachable.
	if n, live := countBlocks(t, a), reachable(t, a); n != len(live) || live[v1.Root] {
		t.Errorf("%d blocks on disk, %d reachable from version 2", n, len(live))
	}
	if !bytes.Equal(readAll(t, a, "1.2.3", m.SOPInstanceUID), data) {
		t.Fatal("new instance differs")
	}
}

// reachable lists every block of every committed study.
func reachable(t testing.TB, a *Archive) map[cid.Cid]bool {
	t.Helper()
	ctx := context.Background()
	live := map[cid.Cid]bool{}
	all, _ := a.Studies(Query{})
	for _, sum := range all {
		st, err := a.Study(sum.UID)
		if err != nil {
			t.Fatal(err)
		}
		live[st.Root] = true
		add := func(root cid.Cid) {
			cs, err := a.objectBlocks(ctx, root)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				live[c] = true
			}
		}
		a.mu.RLock()
		add(a.studies[st.UID].Manifest)
		a.mu.RUnlock()
		for _, se := range st.Series {
			for _, in := range se.Instances {
				add(in.Root)
			}
		}
	}
	return live
}

// countBlocks counts the files in the block store, leftover temporary files
// included.
func countBlocks(t testing.TB, a *Archive) int {
	t.Helper()
	n := 0
	if err := a.bs.walk(context.Background(), func(cid.Cid, string) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRollbackLeavesNothing(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	tx, _ := a.Begin("1.2.9")
	if _, err := a.Begin("1.2.9"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Begin on an open study: %v", err)
	}
	m, data := instance("1.2.9", 1, 1)
	tx.Add(context.Background(), m, data)
	tx.Rollback()
	if n := countBlocks(t, a); n != 0 {
		t.Errorf("%d blocks left after rollback", n)
	}
	if _, err := a.Study("1.2.9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rolled-back study is visible: %v", err)
	}
	if _, err := a.Begin("1.2.9"); err != nil {
		t.Errorf("Begin after rollback: %v", err)
	}
}

// TestIdle: Idle returns at once for a study without an open Tx, waits
// while one is open (another study's Tx ends meanwhile), and gives up when
// its context ends; BeginWait begins once the open Tx ends.
func TestIdle(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	ctx := context.Background()
	if err := a.Idle(ctx, "1.2.9"); err != nil {
		t.Fatalf("Idle on a free study: %v", err)
	}
	tx, _ := a.Begin("1.2.9")
	done := make(chan error, 1)
	go func() { done <- a.Idle(ctx, "1.2.9") }()
	other, _ := a.Begin("1.2.10")
	other.Rollback()
	select {
	case err := <-done:
		t.Fatalf("Idle returned (%v) while the study's Tx was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	tx.Rollback()
	if err := <-done; err != nil {
		t.Fatalf("Idle after the Tx ended: %v", err)
	}
	tx, _ = a.Begin("1.2.9")
	begun := make(chan *Tx, 1)
	go func() {
		next, err := a.BeginWait(ctx, "1.2.9")
		if err != nil {
			t.Error(err)
		}
		begun <- next
	}()
	select {
	case <-begun:
		t.Fatal("BeginWait began while the study's Tx was open")
	case <-time.After(100 * time.Millisecond):
	}
	tx.Rollback()
	tx = <-begun
	if tx == nil {
		t.FailNow()
	}
	defer tx.Rollback()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Idle(cctx, "1.2.9"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Idle with its context ended: %v", err)
	}
}

func TestCorruptBlockIsAnError(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, newOwner(t))
	defer a.Close()
	store(t, a, "1.2.3", 1, 1)
	st, _ := a.Study("1.2.3")
	in := st.Series[0].Instances[0]
	// Flip one byte in every raw chunk file of the store.
	filepathWalk(t, filepath.Join(dir, "blocks"), func(p string) {
		if strings.HasPrefix(filepath.Base(p), "bafk") {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
		}
	})
	if _, err := a.ReadInstance(context.Background(), "1.2.3", in.SOPInstanceUID); err == nil || !strings.Contains(err.Error(), "corrupted") {
		t.Fatalf("reading a corrupted block: %v", err)
	}
}

func filepathWalk(t *testing.T, dir string, fn func(string)) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			fn(p)
		}
		return nil
	})
}

func TestNoPlaintextAtRest(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, newOwner(t))
	store(t, a, "1.2.840.99.12345", 2, 2)
	a.Close()
	filepathWalk(t, dir, func(p string) {
		b, _ := os.ReadFile(p)
		for _, s := range []string{marker, "MRN1", "1.2.840.99.12345", "DICM header"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains %q in clear", p, s)
			}
		}
	})
}

func TestConcurrentAdd(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	tx, _ := a.Begin("1.5")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 5 {
				m, data := instance("1.5", w+1, n+1)
				if _, err := tx.Add(context.Background(), m, data); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st, err := tx.Commit(context.Background())
	if err != nil || st.Instances != 20 || len(st.Series) != 4 {
		t.Fatalf("%+v %v", st, err)
	}
}

// TestConcurrentSameInstance: goroutines adding the same instance at once
// store it once and report it added once, and no block is left over.
func TestConcurrentSameInstance(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	tx, _ := a.Begin("1.6")
	m, data := instance("1.6", 1, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := tx.Add(context.Background(), m, data)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				added++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	st, err := tx.Commit(context.Background())
	if err != nil || st.Instances != 1 || added != 1 {
		t.Fatalf("added %d times, study %+v, %v", added, st, err)
	}
	if got, want := countBlocks(t, a), len(reachable(t, a)); got != want {
		t.Fatalf("%d blocks on disk, %d reachable", got, want)
	}
}

func TestQueries(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	store(t, a, "1.1", 1, 1)
	store(t, a, "1.2", 1, 1)
	for _, tc := range []struct {
		q    Query
		want int
	}{
		{Query{}, 2},
		{Query{PatientID: "MRN1", Issuer: "HOSP"}, 2},
		{Query{PatientID: "OTHER"}, 0},
		{Query{PatientName: strings.ToLower(marker)}, 2},
		{Query{Modality: "MR"}, 0},
		{Query{DateFrom: "20260101", DateTo: "20260101"}, 2},
		{Query{DateFrom: "20260102"}, 0},
		{Query{Limit: 1}, 1},
	} {
		got, _ := a.Studies(tc.q)
		if len(got) != tc.want {
			t.Errorf("%+v: %d studies, want %d", tc.q, len(got), tc.want)
		}
	}
}

func TestMultiBlockInstance(t *testing.T) {
	a := open(t, t.TempDir(), newOwner(t))
	defer a.Close()
	m, _ := instance("1.7", 1, 1)
	m.TransferSyntaxUID = "1.2.840.10008.1.2.4.50" // compressed: stored as is
	data := make([]byte, 5*BlockSize/2)
	rand.Read(data)
	tx, _ := a.Begin("1.7")
	if _, err := tx.Add(context.Background(), m, data); err != nil {
		t.Fatal(err)
	}
	st, err := tx.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if in := st.Series[0].Instances[0]; in.Compressed || in.Root.Type() != cid.DagProtobuf {
		t.Fatalf("a 2.5 MiB JPEG instance: compressed=%v root codec %x", in.Compressed, in.Root.Type())
	}
	if !bytes.Equal(readAll(t, a, "1.7", m.SOPInstanceUID), data) {
		t.Fatal("multi-block instance differs")
	}
}

// TestBeforeCommitRefuses: a study whose BeforeCommit hook fails (the
// node's audit record could not be written) is not committed and leaves no
// block; one whose hook succeeds is, and the hook saw the version committed.
func TestBeforeCommitRefuses(t *testing.T) {
	var seen []Study
	refuse := true
	a, err := Open(Config{Dir: t.TempDir(), Owner: newOwner(t), BeforeCommit: func(_ context.Context, st Study) error {
		seen = append(seen, st)
		if refuse {
			return errors.New("audit log unavailable")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tx, _ := a.Begin("1.2.10")
	m, data := instance("1.2.10", 1, 1)
	if _, err := tx.Add(context.Background(), m, data); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(context.Background()); err == nil || !strings.Contains(err.Error(), "audit log unavailable") {
		t.Fatalf("commit with a failing hook: %v", err)
	}
	if _, err := a.Study("1.2.10"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused study is visible: %v", err)
	}
	if n := countBlocks(t, a); n != 0 {
		t.Fatalf("%d blocks left after a refused commit", n)
	}
	refuse = false
	store(t, a, "1.2.10", 1, 2)
	st, err := a.Study("1.2.10")
	if err != nil {
		t.Fatal(err)
	}
	last := seen[len(seen)-1]
	if len(seen) != 2 || last.UID != st.UID || last.Version != st.Version || !last.Root.Equals(st.Root) || last.Instances != 2 {
		t.Fatalf("hook saw %+v, committed %+v", last, st)
	}
}

// TestPerFileSync: the per-file sync mode commits and reads back like the
// default one.
func TestPerFileSync(t *testing.T) {
	dir, owner := t.TempDir(), newOwner(t)
	a, err := Open(Config{Dir: dir, Owner: owner, PerFileSync: true})
	if err != nil {
		t.Fatal(err)
	}
	want := store(t, a, "1.7", 2, 2)
	a.Close()
	a = open(t, dir, owner)
	defer a.Close()
	for sop, data := range want {
		if !bytes.Equal(readAll(t, a, "1.7", sop), data) {
			t.Fatalf("instance %s differs", sop)
		}
	}
}

func TestNameMatching(t *testing.T) {
	for _, tc := range []struct {
		q    Query
		name string
		want bool
	}{
		{Query{PatientName: "doe"}, "DOE^JANE", true},
		{Query{PatientName: "jane"}, "DOE^JANE", false},
		{Query{PatientName: "jane", FuzzyName: true}, "DOE^JANE", true},
		{Query{PatientName: "ja*", FuzzyName: true}, "DOE^JANE", true},
		{Query{PatientName: "D?E^*"}, "DOE^JANE", true},
		{Query{PatientName: "*JANE"}, "DOE^JANE", true},
		{Query{PatientName: "*JAN"}, "DOE^JANE", false},
		{Query{PatientName: "D*E*E"}, "DOE^JANE", true},
		{Query{PatientName: "D?E"}, "DOE^JANE", false},
		{Query{PatientName: "smith", FuzzyName: true}, "DOE^JANE", false},
	} {
		if got := tc.q.nameMatches(tc.name); got != tc.want {
			t.Errorf("%+v against %q: %v, want %v", tc.q, tc.name, got, tc.want)
		}
	}
}

// TestReceivedStudyMatchesLocalPatient: a study reconciled to a local
// patient is found under that patient, not under the sender's.
func TestReceivedStudyMatchesLocalPatient(t *testing.T) {
	s := &Study{PatientID: "THEIRS", Issuer: "OTHER", LocalPatientID: "MINE", LocalIssuer: "HERE"}
	if !(Query{PatientID: "MINE", Issuer: "HERE"}).matches(s) {
		t.Fatal("not found under the local patient")
	}
	if (Query{PatientID: "THEIRS"}).matches(s) {
		t.Fatal("found under the sender's patient ID")
	}
}
