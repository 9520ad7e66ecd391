package archive

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
)

const crashEnv = "DICOMESH_ARCHIVE_CRASH_DIR"

// ingestStep writes one version of a crash-test study: version 1 is six
// instances in two series added by three goroutines; version 2 replaces
// instance 1.1 with other bytes and adds instance 3.1. Running a step again
// after it committed changes nothing.
func ingestStep(t testing.TB, a *Archive, study string, version int) Study {
	t.Helper()
	type item struct {
		m    InstanceMeta
		data []byte
	}
	var items []item
	if version == 1 {
		for s := 1; s <= 2; s++ {
			for n := 1; n <= 3; n++ {
				m, d := instance(study, s, n)
				items = append(items, item{m, d})
			}
		}
	} else {
		m, d := instanceV(study, 1, 1, 2)
		items = append(items, item{m, d})
		m, d = instance(study, 3, 1)
		items = append(items, item{m, d})
	}
	tx, err := a.Begin(study)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	next := make(chan item)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if _, err := tx.Add(context.Background(), it.m, it.data); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	st, err := tx.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCrashChild is the child of TestKillDuringIngest: it writes studies and
// second versions of them in a loop, printing each step before it begins and
// once Commit has returned, until it is killed.
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
		for v := 1; v <= 1+i%2; v++ {
			fmt.Printf("begin %s %d\n", study, v)
			ingestStep(t, a, study, v)
			fmt.Printf("committed %s %d\n", study, v)
		}
	}
}

// TestKillDuringIngest kills a writing child process (SIGKILL) at random
// moments, then checks that the archive opens, that every acknowledged
// version is there, that no study is partial, that every instance reads back
// byte for byte, that no unreferenced block survived, and that the
// interrupted step completes when run again.
func TestKillDuringIngest(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 10
	}
	dir := t.TempDir()
	owner := newOwner(t)
	text, _ := owner.MarshalText()
	if err := os.WriteFile(filepath.Join(dir, "owner.key"), text, 0o600); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{} // study -> highest version acknowledged
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
		var lastStudy string
		var lastVersion int
		record := func(l string) bool {
			f := strings.Fields(l)
			if len(f) != 3 {
				return false
			}
			v, _ := strconv.Atoi(f[2])
			switch f[0] {
			case "begin":
				lastStudy, lastVersion = f[1], v
			case "committed":
				acked[f[1]] = v
				return true
			}
			return false
		}
		// Wait for the child to commit at least once, then kill it at a
		// random moment.
		deadline := time.After(time.Duration(rand.IntN(300)) * time.Millisecond)
		seen, expired := false, false
		for !(seen && expired) {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child exited early: %s", stderr.String())
				}
				seen = record(l) || seen
			case <-deadline:
				expired = true
				deadline = nil
			}
		}
		cmd.Process.Kill()
		for l := range lines {
			record(l)
		}
		cmd.Wait()

		a, err := Open(Config{Dir: filepath.Join(dir, "archive"), Owner: owner})
		if err != nil {
			t.Fatalf("round %d: store does not open after kill -9: %v", round, err)
		}
		for s, v := range acked {
			st, err := a.Study(s)
			if err != nil || st.Version < v {
				t.Fatalf("round %d: acknowledged version %d of study %s lost: %+v %v", round, v, s, st.Version, err)
			}
		}
		checkCrashStore(t, a, round)
		// The interrupted step completes when run again.
		if lastStudy != "" {
			st := ingestStep(t, a, lastStudy, lastVersion)
			if want := 5 + lastVersion; st.Instances != want {
				t.Fatalf("round %d: study %s after running step %d again has %d instances, want %d", round, lastStudy, lastVersion, st.Instances, want)
			}
			acked[lastStudy] = max(acked[lastStudy], st.Version)
		}
		checkCrashStore(t, a, round)
		a.Close()
	}
	t.Logf("%d studies acknowledged over %d kills, none lost or partial", len(acked), rounds)
}

// checkCrashStore checks every study of a crash-test store and that no block
// outside them remains.
func checkCrashStore(t *testing.T, a *Archive, round int) {
	t.Helper()
	all, _ := a.Studies(Query{})
	for _, sum := range all {
		st, err := a.Study(sum.UID)
		if err != nil {
			t.Fatal(err)
		}
		v := 1
		if st.Instances == 7 {
			v = 2
		} else if st.Instances != 6 {
			t.Fatalf("round %d: partial study %s with %d instances", round, st.UID, st.Instances)
		}
		for _, se := range st.Series {
			for _, in := range se.Instances {
				iv := 1
				if se.Number == 1 && in.Number == 1 {
					iv = v
				}
				_, want := instanceV(st.UID, se.Number, in.Number, iv)
				if !bytes.Equal(readAll(t, a, st.UID, in.SOPInstanceUID), want) {
					t.Fatalf("round %d: instance %s of version %d differs", round, in.SOPInstanceUID, st.Version)
				}
			}
		}
	}
	live := reachable(t, a)
	if n := countBlocks(t, a); n != len(live) {
		t.Errorf("round %d: %d blocks on disk, %d reachable: garbage of an interrupted write was not swept", round, n, len(live))
	}
}
