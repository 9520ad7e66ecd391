package audit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const crashEnv = "DICOMESH_AUDIT_CRASH_DIR"

// crashRecord is the record a crash-test writer appends as its n-th record
// from goroutine g: its content is a function of (g, n), so the parent can
// tell from an index line alone what must be at that index.
func crashRecord(g, n int) Record {
	r := sample(g*100003 + n)
	r.User = fmt.Sprintf("writer%d", g)
	r.Query = fmt.Sprintf("g=%d n=%d %s", g, n, strings.Repeat("x", n%97))
	return r
}

// crashConfig is the configuration both the parent and the child open the
// crash-test log with. CheckpointEvery is small so that kills also land
// while checkpoints are written.
func crashConfig(t testing.TB, dir string) Config {
	cfg := testConfig(t, dir)
	cfg.CheckpointEvery = 37
	cfg.Now = func() time.Time { return epoch }
	return cfg
}

// TestAuditCrashChild is the child of TestKillDuringAppend: eight goroutines
// append records until the process is killed, and each prints
// "acked <index> <goroutine> <n>" once Append has returned.
func TestAuditCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestKillDuringAppend")
	}
	l := openLog(t, crashConfig(t, dir))
	start, err := strconv.Atoi(os.Getenv(crashEnv + "_ROUND"))
	if err != nil {
		t.Fatal(err)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gid := start*8 + g
			for n := 0; ; n++ {
				i, err := l.Append(context.Background(), crashRecord(gid, n))
				if err != nil {
					fmt.Fprintf(os.Stderr, "append: %v\n", err)
					os.Exit(3)
				}
				out.Lock()
				fmt.Fprintf(w, "acked %d %d %d\n", i, gid, n)
				w.Flush()
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKillDuringAppend kills an appending child process (SIGKILL) at random
// moments, then checks that the log opens, that every record whose Append
// returned is at its index with exactly its content, that Verify finds no
// problem (an unsigned or torn tail is only a warning), and that appending
// continues after the records already there. Verify is run both on the
// files as the kill left them and after recovery.
func TestKillDuringAppend(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 3
	}
	dir := t.TempDir()
	acked := map[uint64]Record{}
	var total uint64
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAuditCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashEnv+"_ROUND="+strconv.Itoa(round))
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
		roundAcks := 0
		record := func(line string) {
			var i uint64
			var g, n int
			if _, err := fmt.Sscanf(line, "acked %d %d %d", &i, &g, &n); err != nil {
				return
			}
			if _, dup := acked[i]; dup {
				t.Errorf("round %d: index %d acknowledged twice", round, i)
			}
			acked[i] = crashRecord(g, n)
			roundAcks++
		}
		// Wait for at least one acknowledgement, then kill at a random
		// moment up to 200 ms later.
		deadline := time.After(time.Duration(rand.IntN(200)) * time.Millisecond)
		expired := false
		for roundAcks == 0 || !expired {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited early: %s", round, stderr.String())
				}
				record(line)
			case <-deadline:
				expired, deadline = true, nil
			}
		}
		cmd.Process.Kill()
		for line := range lines {
			record(line)
		}
		cmd.Wait()

		// Verify on the files as the kill left them finds no problem: an
		// unsigned or torn tail is only a warning.
		cfg := crashConfig(t, dir)
		rep, err := Verify(context.Background(), dir, verifyOpts(cfg))
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: verify after kill -9: %v %+v", round, err, rep)
		}
		for _, w := range rep.Warnings {
			if w.Kind != ProblemUnsigned && w.Kind != ProblemTornTail {
				t.Fatalf("round %d: verify after kill -9 warns %+v", round, w)
			}
		}
		// The log opens, every acknowledged record is there, unchanged.
		l, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("round %d: log does not open after kill -9: %v", round, err)
		}
		size := l.Size()
		if size < total {
			t.Fatalf("round %d: log shrank from %d to %d records", round, total, size)
		}
		var buf []byte
		for i, want := range acked {
			if i >= size {
				t.Fatalf("round %d: acknowledged record %d lost (log has %d)", round, i, size)
			}
			var got Record
			got, buf, err = l.readRecord(i, buf)
			if err != nil {
				t.Fatalf("round %d: read acknowledged record %d: %v", round, i, err)
			}
			want.Index, want.Time = i, epoch
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("round %d: acknowledged record %d differs (-want +got):\n%s", round, i, d)
			}
		}
		// Appending continues at the end.
		i, err := l.Append(context.Background(), sample(round))
		if err != nil || i != size {
			t.Fatalf("round %d: append after recovery = %d, %v; want index %d", round, i, err, size)
		}
		want := sample(round)
		want.Index, want.Time = i, epoch
		acked[i] = want
		if err := l.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		total = size + 1
		t.Logf("round %d: %d records acknowledged by the child, log has %d", round, roundAcks, total)

		rep, err = Verify(context.Background(), dir, verifyOpts(cfg))
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: verify after recovery: %v %+v", round, err, rep)
		}
		if rep.Records != total || rep.Verified != total {
			t.Fatalf("round %d: verify saw %d records, %d verified; want %d", round, rep.Records, rep.Verified, total)
		}
	}
}
