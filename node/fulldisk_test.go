package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/audit"
)

// smallDisk mounts a tmpfs of size bytes for the test, or skips it where
// this process may not mount (not root, no mount namespace rights).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("a full disk is simulated with a tmpfs mount: needs root on Linux")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// nodeOnSmallDisk opens a new node whose home is on a small disk (the
// caller closes it).
func nodeOnSmallDisk(t *testing.T, size string) (disk string, h Home, n *Node) {
	t.Helper()
	disk = smallDisk(t, size)
	h = Home(filepath.Join(disk, "home"))
	if _, err := Init(h, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	n, err := Open(h, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return disk, h, n
}

func freeBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	return s.Bavail * uint64(s.Bsize)
}

// TestFullDisk: a study that does not fit fails with a clear error, leaves
// nothing of itself committed nor its blocks behind, and the node opens
// and stores what fits afterwards.
func TestFullDisk(t *testing.T) {
	disk, h, n := nodeOnSmallDisk(t, "8m")
	before := freeBytes(t, disk)

	// About 42 MB of DICOM, more than the disk even compressed.
	bigDir, big := synthStudy(t, "ct", func(s *synth.Spec) { s.Slices = 80 })
	ctx := context.Background()
	rep, err := n.Ingest(ctx, nil, bigDir)
	if err == nil && len(rep.Studies) > 0 {
		t.Fatalf("a study larger than the disk was stored: %+v", rep.Studies)
	}
	t.Logf("ingest on a full disk: %v", err)
	if _, err := n.Archive.Study(big.UID); err == nil {
		t.Fatal("the study that did not fit is in the archive")
	}
	// What the failed transaction wrote is gone again.
	if after := freeBytes(t, disk); after+256<<10 < before {
		t.Errorf("%d bytes free after the failed ingest, %d before: its blocks were left behind", after, before)
	}
	if err := n.Close(); err != nil {
		t.Logf("close: %v", err)
	}

	// The node opens cleanly and stores a study that fits.
	n, err = Open(h, Options{})
	if err != nil {
		t.Fatalf("open after a full disk: %v", err)
	}
	defer n.Close()
	rep, err = n.Ingest(ctx, nil, writeStudy(t, "cr"))
	if err != nil || len(rep.Studies) != 1 {
		t.Fatalf("ingest of a study that fits after a full disk: %v %+v", err, rep)
	}
	if r, err := n.VerifyAudit(ctx, audit.Actor{User: "officer"}); err != nil || !r.OK() {
		t.Fatalf("the audit log does not verify after a full disk: %v %+v", err, r)
	}
}

// TestSpoolFullDisk: C-STORE instances spooled until the disk is full are
// acknowledged only when they were synced; a commit that does not fit
// keeps the spool; once there is room again, every acknowledged instance
// is committed.
func TestSpoolFullDisk(t *testing.T) {
	disk, _, n := nodeOnSmallDisk(t, "6m")
	defer n.Close()
	_, st := synthStudy(t, "ct", func(s *synth.Spec) { s.Slices = 40 })
	ctx := context.Background()
	acked := 0
	for _, f := range st.Files {
		data, _ := os.ReadFile(f.Path)
		if err := n.Spool(ctx, "assoc1", data); err != nil {
			t.Logf("spool refused instance %d: %v", acked+1, err)
			break
		}
		acked++
	}
	if acked == 0 || acked == len(st.Files) {
		t.Fatalf("%d of %d instances spooled: the disk was not filled part way", acked, len(st.Files))
	}
	if err := n.CommitSpool(ctx, "assoc1"); err == nil {
		t.Log("the commit fitted on the full disk")
	} else if _, serr := os.Stat(n.spoolDir("assoc1")); serr != nil {
		t.Fatalf("a commit that failed (%v) lost the spool: %v", err, serr)
	}
	// Room again: the spool is committed with every acknowledged instance.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot grow the tmpfs: %v %s", err, out)
	}
	if err := n.CommitSpool(ctx, "assoc1"); err != nil {
		t.Fatal(err)
	}
	got, err := n.Archive.Study(st.UID)
	if err != nil || got.Instances != acked {
		t.Fatalf("after the commit: %d instances, %d were acknowledged (%v)", got.Instances, acked, err)
	}
}
