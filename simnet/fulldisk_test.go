package simnet

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/archive"
)

// TestPullOntoFullDisk: a pull whose blocks do not fit on the recipient's
// disk fails without committing anything; once there is room, the same
// pull completes without fetching again the blocks it kept, and the study
// is whole.
func TestPullOntoFullDisk(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("a full disk is simulated with a tmpfs mount: needs root on Linux")
	}
	ctx := context.Background()
	net, err := Start(ctx, Config{Dir: t.TempDir(), Federation: "Valley", Facilities: []string{"Rural", "Tertiary"}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	rural, tertiary := net.Members[0].Node, net.Members[1].Node
	// The recipient's block store gets a disk of its own, too small for
	// the study.
	blocksDir := filepath.Join(tertiary.Home.ArchiveDir(), "blocks")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", blocksDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", blocksDir).Run() })
	if err := archive.Prepare(tertiary.Home.ArchiveDir()); err != nil {
		t.Fatal(err)
	}

	spec, _ := synth.DefaultSpec("ct")
	spec.Slices = 40
	dir := t.TempDir()
	st, err := synth.Write(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	cand := ingestAndFind(t, rural, tertiary, dir, st)
	req := node.PullRequest{Manifest: cand.ManifestID, Purpose: "TREAT", User: "dr.t"}
	var first blocks.Progress
	_, err = tertiary.Pull(ctx, req, func(p blocks.Progress) { first = p })
	if err == nil {
		t.Fatal("a pull larger than the disk succeeded")
	}
	t.Logf("pull onto a full disk: %v", err)
	if _, err := tertiary.Archive.Study(st.UID); err == nil {
		t.Fatal("a study that did not fit was committed")
	}
	if first.Blocks == 0 {
		t.Fatal("no block was kept before the disk was full")
	}

	if out, err := exec.Command("mount", "-o", "remount,size=128m", blocksDir).CombinedOutput(); err != nil {
		t.Skipf("cannot grow the tmpfs: %v %s", err, out)
	}
	var again blocks.Progress
	got, err := tertiary.Pull(ctx, req, func(p blocks.Progress) { again = p })
	if err != nil || got.Instances != len(st.Files) {
		t.Fatalf("pull once there is room: %+v %v", got, err)
	}
	t.Logf("first pull kept %d blocks; the second fetched %d of %d", first.Blocks, again.Fetched, again.Blocks)
	if again.Fetched >= again.Blocks {
		t.Errorf("the second pull fetched %d of %d blocks: nothing kept from the first (%d blocks then)", again.Fetched, again.Blocks, first.Blocks)
	}
	if _, err := tertiary.Archive.Study(st.UID); err != nil {
		t.Fatalf("the study is not committed: %v", err)
	}
}
