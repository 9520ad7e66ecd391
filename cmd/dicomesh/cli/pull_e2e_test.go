package cli

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dicomesh/dicomesh/node"
)

// TestPullResumesAfterSourceKilled: the only source of a study is killed
// (SIGKILL) in the middle of a pull; the pull fails; once the source is
// back, the same pull resumes: the blocks verified the first time are not
// fetched again, and the stored instances are byte for byte the originals.
func TestPullResumesAfterSourceKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a 100 MB study between processes")
	}
	a, b := newHospital(t, "Rural Hospital"), newHospital(t, "Tertiary Center")
	a.ok("federation", "create", "--name", "Valley")
	a.start()
	b.ok("federation", "join", strings.TrimSpace(a.ok("federation", "invite")))
	b.start()
	for _, h := range []*hospital{a, b} {
		h.eventually("two voters and a leader", func() bool { return agree(h.members(), 2) })
	}
	dir := filepath.Join(t.TempDir(), "ct")
	a.ok("synth", "--preset", "ct", "--slices", "200", "--patient-id", "MRN1", "--issuer", "RURAL", "--out", dir)
	a.ok("ingest", dir)
	var cands []node.Candidate
	b.eventually("the manifest", func() bool {
		json.Unmarshal([]byte(b.try("find", "--patient-id", "MRN1", "--issuer", "RURAL", "-o", "json")), &cands)
		return len(cands) == 1
	})

	// The first pull: once blocks arrive, the source freezes at once and is
	// then killed, as a crash would.
	pull := b.cmd("pull", cands[0].ManifestID, "--purpose", "TREAT", "--progress")
	stderr, _ := pull.StderrPipe()
	var out bytes.Buffer
	pull.Stdout = &out
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	progress := regexp.MustCompile(`pulling: (\d+) of (\d+) blocks`)
	sc := bufio.NewScanner(stderr)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) { // lines end in \r or \n
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	killed := false
	var log bytes.Buffer
	for sc.Scan() {
		log.Write(append(sc.Bytes(), '\n'))
		if m := progress.FindSubmatch(sc.Bytes()); m != nil && !killed {
			if n, _ := strconv.Atoi(string(m[1])); n > 0 {
				a.run.Process.Signal(syscall.SIGSTOP)
				a.kill()
				killed = true
			}
		}
	}
	if err := pull.Wait(); err == nil || !killed {
		t.Fatalf("the pull did not fail with its source killed (killed %v): %v\n%s%s", killed, err, out.String(), log.String())
	}

	// The source restarts; the same pull resumes.
	a.start()
	a.eventually("the restarted source's replica", func() bool { return agree(a.members(), 2) })
	got := b.ok("pull", cands[0].ManifestID, "--purpose", "TREAT")
	m := regexp.MustCompile(`(\d+) blocks fetched, (\d+) already here`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("pull: %s", got)
	}
	fetched, already := atoi(m[1]), atoi(m[2])
	if already == 0 || fetched == 0 {
		t.Fatalf("the second pull fetched %d blocks and found %d from the first: no resume", fetched, already)
	}

	// Byte for byte the originals.
	exp := filepath.Join(t.TempDir(), "export")
	var studies []struct {
		UID string `json:"study_uid"`
	}
	json.Unmarshal([]byte(b.ok("studies", "-o", "json")), &studies)
	if len(studies) != 1 {
		t.Fatalf("studies at the recipient: %+v", studies)
	}
	b.run.Process.Signal(syscall.SIGTERM) // export opens the stores itself
	b.run.Wait()
	b.ok("export", studies[0].UID, "--to", exp)
	want, gotSums := sums(t, dir), sums(t, exp)
	if len(want) != 200 || len(gotSums) != len(want) {
		t.Fatalf("%d instances exported, %d generated", len(gotSums), len(want))
	}
	for h := range want {
		if !gotSums[h] {
			t.Fatal("an exported instance differs from the originals")
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// sums returns the SHA-256 of every DICOM file under dir.
func sums(t *testing.T, dir string) map[[32]byte]bool {
	t.Helper()
	out := map[[32]byte]bool{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && filepath.Ext(p) == ".dcm" {
			b, _ := os.ReadFile(p)
			out[sha256.Sum256(b)] = true
		}
		return nil
	})
	return out
}
