package archive

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
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
