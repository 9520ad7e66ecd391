package cli

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCStoreKilled: the node is killed (SIGKILL) in the middle of a
// C-STORE association from dcmtk's storescu. Every instance it had
// answered with success is in the archive once it restarts, nothing half
// written is taken for an instance, and the sender's retry of the whole
// study completes it: the archive then holds each data set byte for byte.
func TestCStoreKilled(t *testing.T) {
	storescu, err := exec.LookPath("storescu")
	if err != nil {
		t.Skip("dcmtk is not installed (apt-get install dcmtk)")
	}
	h := newHospital(t, "Rural Hospital")
	dir := filepath.Join(t.TempDir(), "ct")
	h.ok("synth", "--preset", "ct", "--slices", "60", "--out", dir)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.dcm"))
	if len(files) != 60 {
		t.Fatalf("%d files generated", len(files))
	}
	port := freePort(t)
	flags := []string{"--dicom", "127.0.0.1:" + port, "--aet", "DICOMESH"}
	h.start(flags...)
	send := func() *exec.Cmd {
		c := exec.Command(storescu, append([]string{"-v", "-aet", "MODALITY", "-aec", "DICOMESH", "127.0.0.1", port}, files...)...)
		c.Env = append(os.Environ(), "TCP_NODELAY=1")
		return c
	}

	// Killed once the tenth success has been read by the sender.
	scu := send()
	out, _ := scu.StdoutPipe()
	scu.Stderr = scu.Stdout
	if err := scu.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Received Store Response (Success)") {
			if acked++; acked == 10 {
				h.kill()
			}
		}
	}
	io.Copy(io.Discard, out)
	if err := scu.Wait(); err == nil || acked < 10 || acked == len(files) {
		t.Fatalf("storescu ended with %v after %d successes: the node was not killed mid-association", err, acked)
	}

	// The restarted node commits what it acknowledged.
	h.start(flags...)
	n := 0
	h.eventually("the acknowledged instances in the archive", func() bool {
		n = h.instances()
		return n >= acked
	})
	if n > len(files) {
		t.Fatalf("%d instances stored from %d sent", n, len(files))
	}
	t.Logf("killed after %d successes; %d instances committed at restart", acked, n)
	if aside, _ := os.ReadDir(filepath.Join(h.home, "spool-damaged")); len(aside) > 1 {
		t.Fatalf("%d spool files set aside; at most the one being written can be", len(aside))
	}

	// The sender sends the study again: the archive completes it.
	if b, err := send().CombinedOutput(); err != nil {
		t.Fatalf("storescu after the restart: %v\n%s", err, b)
	}
	h.eventually("the whole study in the archive", func() bool { return h.instances() == len(files) })
	h.run.Process.Signal(syscall.SIGTERM) // export opens the stores itself
	h.run.Wait()
	var studies []struct {
		UID string `json:"study_uid"`
	}
	json.Unmarshal([]byte(h.ok("studies", "-o", "json")), &studies)
	if len(studies) != 1 {
		t.Fatalf("studies: %+v", studies)
	}
	exp := filepath.Join(t.TempDir(), "export")
	h.ok("export", studies[0].UID, "--to", exp)
	got, _ := filepath.Glob(filepath.Join(exp, "*", "*.dcm"))
	want := map[[32]byte]bool{}
	for _, f := range files {
		want[datasetSum(t, f)] = true
	}
	if len(got) != len(files) {
		t.Fatalf("%d instances exported, %d sent", len(got), len(files))
	}
	for _, f := range got {
		if !want[datasetSum(t, f)] {
			t.Fatalf("%s: its data set is not one of those sent", f)
		}
	}
}

// instances is how many instances the archive holds, over all studies.
func (h *hospital) instances() int {
	var studies []struct {
		Instances int `json:"instances"`
	}
	json.Unmarshal([]byte(h.try("studies", "-o", "json")), &studies)
	n := 0
	for _, s := range studies {
		n += s.Instances
	}
	return n
}

// datasetSum is the SHA-256 of a Part 10 file's data set: what follows the
// file meta group, whose length is the UL value at byte 140. (A C-STORE
// carries the data set; each receiver writes its own file meta.)
func datasetSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 144 || string(b[128:132]) != "DICM" {
		t.Fatalf("%s: not a Part 10 file (%v)", path, err)
	}
	start := 144 + int(binary.LittleEndian.Uint32(b[140:144]))
	if start > len(b) {
		t.Fatalf("%s: file meta longer than the file", path)
	}
	return sha256.Sum256(b[start:])
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
