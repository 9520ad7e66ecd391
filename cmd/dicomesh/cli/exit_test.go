package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	run := func(args ...string) int {
		return Run(context.Background(), append([]string{"--home", home}, args...), io.Discard, io.Discard)
	}
	if got := run("init"); got != exitOK {
		t.Fatalf("init: exit %d", got)
	}
	if got := run("studies", "-o", "xml"); got != exitUsage {
		t.Errorf("bad -o: exit %d, want %d", got, exitUsage)
	}
	if got := run("export", "1.2.3"); got != exitUsage {
		t.Errorf("export without --to: exit %d, want %d", got, exitUsage)
	}
	in := filepath.Join(dir, "in")
	if got := run("synth", "--preset", "cr", "--out", in); got != exitOK {
		t.Fatalf("synth: exit %d", got)
	}
	if err := os.WriteFile(filepath.Join(in, "bomb.dcm"), dicomBomb(), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run("studies", "--no-such-flag"); got != exitUsage {
		t.Errorf("unknown flag: exit %d, want %d", got, exitUsage)
	}
	if got := run("ingest", in); got != exitRejected {
		t.Errorf("ingest with a rejected file: exit %d, want %d", got, exitRejected)
	}
	if got := run("ingest", filepath.Join(dir, "missing")); got != exitFailure {
		t.Errorf("ingest of a missing path: exit %d, want %d", got, exitFailure)
	}
}
