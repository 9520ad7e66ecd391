package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/dicomesh/dicomesh/crypto"
)

// copyDAG copies the first n blocks (all when n < 0) of the study DAG
// under root from one archive's block store to another's.
func copyDAG(t *testing.T, from, to *Archive, root cid.Cid, n int) int {
	t.Helper()
	live := map[cid.Cid]bool{}
	if err := from.markPartial(context.Background(), root, live); err != nil {
		t.Fatal(err)
	}
	copied := 0
	for c := range live {
		if n >= 0 && copied == n {
			break
		}
		blk, err := from.bs.Get(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if err := to.bs.Put(context.Background(), blk); err != nil {
			t.Fatal(err)
		}
		copied++
	}
	return len(live)
}

func TestReceiveStudy(t *testing.T) {
	owner := open(t, t.TempDir(), newOwner(t))
	defer owner.Close()
	want := store(t, owner, "1.8", 2, 2)
	st, _ := owner.Study("1.8")
	key, err := owner.StudyKey("1.8")
	if err != nil {
		t.Fatal(err)
	}
	var hooked []Study
	recv, err := Open(Config{Dir: t.TempDir(), Owner: newOwner(t), BeforeCommit: func(_ context.Context, s Study) error {
		hooked = append(hooked, s)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	ctx := context.Background()
	if err := recv.BeginReceive(st.Root); err != nil {
		t.Fatal(err)
	}
	// Not every block is there yet: nothing is committed.
	copyDAG(t, owner, recv, st.Root, 3)
	if _, err := recv.CommitReceived(ctx, st.Root, key, Origin{Facility: "A", Manifest: "m1"}); err == nil {
		t.Fatal("committed a study with missing blocks")
	}
	if _, err := recv.Study("1.8"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("partial study visible: %v", err)
	}
	copyDAG(t, owner, recv, st.Root, -1)
	got, err := recv.CommitReceived(ctx, st.Root, key, Origin{Facility: "A", Manifest: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "A" || got.SourceManifest != "m1" || got.Instances != 4 || !got.Root.Equals(st.Root) || len(hooked) != 1 {
		t.Fatalf("received %+v (hook calls %d)", got, len(hooked))
	}
	for sop, data := range want {
		if !bytes.Equal(readAll(t, recv, "1.8", sop), data) {
			t.Fatalf("instance %s differs", sop)
		}
	}
	// The same root again changes nothing.
	if again, err := recv.CommitReceived(ctx, st.Root, key, Origin{Facility: "A", Manifest: "m1"}); err != nil || again.Version != got.Version {
		t.Fatalf("second commit: %+v %v", again, err)
	}
	// Another facility's study under the same UID conflicts.
	if _, err := recv.CommitReceived(ctx, st.Root, key, Origin{Facility: "B"}); err != nil {
		t.Fatalf("same root from another origin: %v", err)
	}
	tx, _ := owner.Begin("1.8") // version 2 at the owner
	m, data := instance("1.8", 3, 1)
	tx.Add(ctx, m, data)
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	st2, _ := owner.Study("1.8")
	copyDAG(t, owner, recv, st2.Root, -1)
	if _, err := recv.CommitReceived(ctx, st2.Root, key, Origin{Facility: "B"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("newer version from another facility: %v", err)
	}
	if v2, err := recv.CommitReceived(ctx, st2.Root, key, Origin{Facility: "A"}); err != nil || v2.Version != 2 {
		t.Fatalf("newer version from the owner: %+v %v", v2, err)
	}
}

// TestReceiveSurvivesSweep: blocks of a study being received survive the
// sweep at Open; once the receipt is abandoned, the next sweep removes them.
func TestReceiveSurvivesSweep(t *testing.T) {
	owner := open(t, t.TempDir(), newOwner(t))
	defer owner.Close()
	store(t, owner, "1.9", 1, 3)
	st, _ := owner.Study("1.9")
	dir, id := t.TempDir(), newOwner(t)
	recv := open(t, dir, id)
	recv.BeginReceive(st.Root)
	total := copyDAG(t, owner, recv, st.Root, -1)
	// An interrupted local write leaves a pending marker: the next Open sweeps.
	tx, _ := recv.Begin("1.10")
	m, data := instance("1.10", 1, 1)
	tx.Add(context.Background(), m, data)
	recv.db.Close() // as if the process died here
	recv = open(t, dir, id)
	if n := countBlocks(t, recv); n != total {
		t.Fatalf("%d blocks after the sweep, want the %d being received", n, total)
	}
	if err := recv.AbortReceive(st.Root); err != nil {
		t.Fatal(err)
	}
	recv.Close()
	recv = open(t, dir, id)
	defer recv.Close()
	if n := countBlocks(t, recv); n != 0 {
		t.Fatalf("%d blocks left after an abandoned receipt", n)
	}
}

// receivingManifest stores a study of series x count instances at an
// owner and starts receiving it at a new archive, with the root block and
// the detail manifest there and no instance yet. Both archives close with
// the test.
func receivingManifest(t *testing.T, uid string, series, count int) (owner, recv *Archive, st Study, key *crypto.StudyKey, root blocks.Block) {
	t.Helper()
	ctx := context.Background()
	owner = open(t, t.TempDir(), newOwner(t))
	t.Cleanup(func() { owner.Close() })
	store(t, owner, uid, series, count)
	st, _ = owner.Study(uid)
	key, _ = owner.StudyKey(uid)
	recv = open(t, t.TempDir(), newOwner(t))
	t.Cleanup(func() { recv.Close() })
	recv.BeginReceive(st.Root)
	root, _ = owner.bs.Get(ctx, st.Root)
	recv.bs.Put(ctx, root)
	mroot, _, err := recv.ManifestRoot(ctx, st.Root)
	if err != nil {
		t.Fatal(err)
	}
	copyDAG(t, owner, recv, mroot, -1)
	return owner, recv, st, key, root
}

// TestPrecheck: instances are checked as their blocks arrive, before the
// commit; the commit checks what is left. An instance whose blocks are
// not what the manifest says is never marked checked, so the commit still
// refuses the study.
func TestPrecheck(t *testing.T) {
	ctx := context.Background()
	// The root and the detail manifest first, then one instance.
	owner, recv, st, key, _ := receivingManifest(t, "1.9", 2, 3)
	first := st.Series[0].Instances[0]
	copyDAG(t, owner, recv, first.Root, -1)
	pre := recv.Precheck(ctx, st.Root, key, recv.Receiver())
	pre.Arrived()
	// Stop waits for what was under way; the check of the first instance
	// may need more than one wake-up to start.
	for range 100 {
		recv.mu.Lock()
		done := recv.checked[st.Root][first.Root]
		recv.mu.Unlock()
		if done {
			break
		}
		pre.Arrived()
		time.Sleep(10 * time.Millisecond)
	}
	n, at := pre.Stop()
	if n != 1 || at.IsZero() {
		t.Fatalf("%d instances checked before the rest arrived, want 1", n)
	}
	copyDAG(t, owner, recv, st.Root, -1)
	got, err := recv.CommitReceived(ctx, st.Root, key, Origin{Facility: "A"})
	if err != nil || got.Instances != 6 {
		t.Fatalf("commit after a precheck: %+v %v", got, err)
	}
	if len(recv.checked) != 0 {
		t.Fatal("the checked instances are kept after the commit")
	}

	// A corrupted instance block: the precheck leaves it, the commit fails.
	store(t, owner, "1.10", 1, 2)
	st2, _ := owner.Study("1.10")
	key2, _ := owner.StudyKey("1.10")
	recv2 := open(t, t.TempDir(), newOwner(t))
	defer recv2.Close()
	recv2.BeginReceive(st2.Root)
	copyDAG(t, owner, recv2, st2.Root, -1)
	bad := st2.Series[0].Instances[1]
	leaf := bad.Root // a small instance is one raw block
	if leaf.Type() == cid.DagProtobuf {
		node, _ := recv2.bs.Get(ctx, bad.Root)
		leaf = firstLink(t, node.RawData())
	}
	corruptBlock(t, recv2, leaf)
	pre2 := recv2.Precheck(ctx, st2.Root, key2, recv2.Receiver())
	pre2.Arrived()
	time.Sleep(100 * time.Millisecond)
	pre2.Stop()
	recv2.mu.Lock()
	marked := recv2.checked[st2.Root][bad.Root]
	recv2.mu.Unlock()
	if marked {
		t.Fatal("a corrupted instance was marked checked")
	}
	if _, err := recv2.CommitReceived(ctx, st2.Root, key2, Origin{Facility: "A"}); err == nil {
		t.Fatal("committed a study with a corrupted instance")
	}
}

// firstLink returns the first link of a dag-pb node.
func firstLink(t *testing.T, raw []byte) cid.Cid {
	t.Helper()
	nd, err := merkledag.DecodeProtobuf(raw)
	if err != nil || len(nd.Links()) == 0 {
		t.Fatalf("not a node with links: %v", err)
	}
	return nd.Links()[0].Cid
}

// corruptBlock flips a byte of a stored block's file.
func corruptBlock(t *testing.T, a *Archive, c cid.Cid) {
	t.Helper()
	_, file := a.bs.path(c)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(file, b, 0o600)
}

// TestPrecheckFollowsFetchOrder delivers the instances of a 12-instance
// study in the order of the root's links, which a fetch follows ("i10"
// sorts before "i2"), and checks that each is checked as it arrives rather
// than waiting for the manifest's next instance.
func TestPrecheckFollowsFetchOrder(t *testing.T) {
	ctx := context.Background()
	owner, recv, st, key, blk := receivingManifest(t, "1.12", 1, 12)
	nd, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		t.Fatal(err)
	}
	var arrived []cid.Cid // the first three instances a fetch brings
	for _, l := range nd.Links() {
		if l.Name != "m" && len(arrived) < 3 {
			arrived = append(arrived, l.Cid)
		}
	}
	if nd.Links()[2].Name != "i10" {
		t.Fatalf("the root's third link is %q: this test wants dag-pb's sorted link names", nd.Links()[2].Name)
	}
	for _, c := range arrived {
		copyDAG(t, owner, recv, c, -1)
	}
	pre := recv.Precheck(ctx, st.Root, key, recv.Receiver())
	checked := func() int {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		n := 0
		for _, c := range arrived {
			if recv.checked[st.Root][c] {
				n++
			}
		}
		return n
	}
	for range 200 {
		if checked() == len(arrived) {
			break
		}
		pre.Arrived()
		time.Sleep(10 * time.Millisecond)
	}
	if n, _ := pre.Stop(); n != len(arrived) || checked() != len(arrived) {
		t.Fatalf("%d of the %d instances that arrived were checked", n, len(arrived))
	}
}

// TestPrecheckReadsKeptBlocks: instances whose blocks came through the
// Receiver are checked from memory; their files are not read again.
func TestPrecheckReadsKeptBlocks(t *testing.T) {
	ctx := context.Background()
	owner, recv, st, key, _ := receivingManifest(t, "1.13", 1, 3)
	rcv := recv.Receiver()
	for _, in := range st.Series[0].Instances {
		if in.Root.Type() != cid.Raw {
			t.Fatalf("instance %s is not one raw block", in.SOPInstanceUID)
		}
		b, _ := owner.bs.Get(ctx, in.Root)
		if err := rcv.PutVerified(ctx, b); err != nil {
			t.Fatal(err)
		}
		// Only the kept copy is left to read.
		_, file := recv.bs.path(in.Root)
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
	}
	pre := recv.Precheck(ctx, st.Root, key, rcv)
	for range 200 {
		if st, _ := pre.Study(); st.Instances == 3 {
			break
		}
		pre.Arrived()
		time.Sleep(10 * time.Millisecond)
	}
	if n, _ := pre.Stop(); n != 3 {
		t.Fatalf("%d of 3 instances checked from the kept blocks", n)
	}
	if rcv.recentBytes != 0 || len(rcv.recent) != 0 {
		t.Errorf("%d bytes still kept after the check", rcv.recentBytes)
	}
}
