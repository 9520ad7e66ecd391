package archive

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
)

const crashEnv = "DICOMESH_ARCHIVE_CRASH_DIR"

// TestCrashChild is the child of TestKillDuringIngest: it commits studies in
// a loop, printing each one once Commit has returned, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestKillDuringIngest")
	}
	text, err := os.ReadFile(filepath.Join(dir, "owner.key"))
	if err != nil {
		t.Fatal(err)
	}
	owner, err := crypto.ParseIdentity(text)
	if err != nil {
		t.Fatal(err)
	}
	a := open(t, filepath.Join(dir, "archive"), owner)
	start := time.Now().UnixNano()
	for i := 0; ; i++ {
		study := fmt.Sprintf("1.9.%d.%d", start, i)
		store(t, a, study, 2, 3)
		fmt.Printf("committed %s\n", study)
	}
}

func TestKillDuringIngest(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	dir := t.TempDir()
	owner := newOwner(t)
	text, _ := owner.MarshalText()
	if err := os.WriteFile(filepath.Join(dir, "owner.key"), text, 0o600); err != nil {
		t.Fatal(err)
	}
	committed := map[string]bool{}
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Wait for the child to commit at least one study, then kill it at a
		// random moment.
		deadline := time.After(time.Duration(20+rand.IntN(250)) * time.Millisecond)
		seen, expired := false, false
		for !(seen && expired) {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child exited early: %s", stderr.String())
				}
				if s, ok := strings.CutPrefix(l, "committed "); ok {
					committed[s] = true
					seen = true
				}
			case <-deadline:
				expired = true
				deadline = nil
			}
		}
		cmd.Process.Kill()
		for l := range lines {
			if s, ok := strings.CutPrefix(l, "committed "); ok {
				committed[s] = true
			}
		}
		cmd.Wait()

		a, err := Open(Config{Dir: filepath.Join(dir, "archive"), Owner: owner})
		if err != nil {
			t.Fatalf("round %d: store does not open after kill -9: %v", round, err)
		}
		all, _ := a.Studies(Query{})
		for s := range committed {
			if _, err := a.Study(s); err != nil {
				t.Fatalf("round %d: acknowledged study %s lost: %v", round, s, err)
			}
		}
		for _, st := range all {
			want := 6
			if strings.HasPrefix(st.UID, "1.8.") {
				want = 1
			}
			if st.Instances != want {
				t.Fatalf("round %d: partial study %s with %d instances", round, st.UID, st.Instances)
			}
			for _, se := range st.Series {
				for _, in := range se.Instances {
					_, want := instance(st.UID, se.Number, in.Number)
					if !bytes.Equal(readAll(t, a, st.UID, in.SOPInstanceUID), want) {
						t.Fatalf("round %d: instance %s differs", round, in.SOPInstanceUID)
					}
				}
			}
		}
		// Nothing but the committed studies' blocks remains.
		live := reachable(t, a)
		if n := countBlocks(t, a); n != len(live) {
			t.Errorf("round %d: %d blocks on disk, %d reachable: garbage of the interrupted write was not swept", round, n, len(live))
		}
		// The store takes writes again.
		store(t, a, fmt.Sprintf("1.8.%d", round), 1, 1)
		a.Close()
	}
	t.Logf("%d studies acknowledged over %d kills, none lost or partial", len(committed), rounds)
}
