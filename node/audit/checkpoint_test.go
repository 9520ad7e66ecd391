package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

func TestCheckpointFormat(t *testing.T) {
	key := testKey("fac-a")
	s, err := newSigner("example.org/audit", key)
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	root[0] = 0xab
	c, err := signCheckpoint(s, 42, root)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := "example.org/audit\n42\n" + base64.StdEncoding.EncodeToString(root) + "\n"
	if !strings.HasPrefix(string(c.Note), wantBody+"\n\u2014 example.org/audit ") {
		t.Fatalf("note = %q, want the tlog-checkpoint body, a blank line and a signature line", c.Note)
	}
	// An independently built verifier (from the note package's own key
	// encoding) accepts it.
	vkey, err := note.NewEd25519VerifierKey("example.org/audit", key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(c.Note, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	if n.Text != wantBody {
		t.Fatalf("text = %q", n.Text)
	}
	got, err := OpenCheckpoint(c.Note, v)
	if err != nil || got.Size != 42 || got.Origin != "example.org/audit" || string(got.Root) != string(root) {
		t.Fatalf("OpenCheckpoint = %+v, %v", got, err)
	}
	// Another key, another origin, a changed body: all refused.
	other, _ := NewVerifier("example.org/audit", testKey("other").Public().(ed25519.PublicKey))
	if _, err := OpenCheckpoint(c.Note, other); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("wrong key: err = %v", err)
	}
	bad := []byte(strings.Replace(string(c.Note), "\n42\n", "\n43\n", 1))
	if _, err := OpenCheckpoint(bad, v); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("altered size: err = %v", err)
	}
}

func TestCheckpointBody(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		text string
		ok   bool
	}{
		{"o\n1\n" + root + "\n", true},
		{"o\n1\n" + root + "\nextension line\n", true},
		{"o\n01\n" + root + "\n", false},
		{"o\n-1\n" + root + "\n", false},
		{"o\n1\n" + root[:10] + "\n", false},
		{"o\n1\n", false},
		{"\n1\n" + root + "\n", false},
		{"o\n1\n" + root, false},
	}
	for _, tt := range tests {
		_, err := parseCheckpointBody(tt.text)
		if (err == nil) != tt.ok {
			t.Errorf("parse %q: err = %v, want ok=%v", tt.text, err, tt.ok)
		}
	}
}

// TestConsistencyBetweenCheckpoints checks the log's consistency proofs
// between its real checkpoints, and that forks and shrinks are refused.
func TestConsistencyBetweenCheckpoints(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.CheckpointEvery = 10
	l := openLog(t, cfg)
	defer l.Close()
	fill(t, l, 57)
	cps := l.Checkpoints()
	if len(cps) != 5 {
		t.Fatalf("%d checkpoints after 57 records every 10, want 5", len(cps))
	}
	for i := range cps {
		for j := i; j < len(cps); j++ {
			p, err := l.ConsistencyProof(cps[i].Size, cps[j].Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(cps[i], cps[j], p); err != nil {
				t.Errorf("checkpoints %d -> %d: %v", cps[i].Size, cps[j].Size, err)
			}
		}
	}
	// A fork: same size, other root.
	forged := cps[2]
	forged.Root = make([]byte, 32)
	if err := VerifyConsistency(cps[2], forged, nil); !errors.Is(err, ErrTampered) {
		t.Errorf("fork: err = %v", err)
	}
	// A shrink.
	if err := VerifyConsistency(cps[3], cps[1], nil); !errors.Is(err, ErrTampered) {
		t.Errorf("shrink: err = %v", err)
	}
	// A later checkpoint over a rewritten history.
	p, _ := l.ConsistencyProof(cps[1].Size, cps[3].Size)
	rewritten := cps[3]
	rewritten.Root = cps[4].Root
	if err := VerifyConsistency(cps[1], rewritten, p); !errors.Is(err, ErrTampered) {
		t.Errorf("rewritten history: err = %v", err)
	}
	// Inclusion proofs of records against a checkpoint.
	c := cps[4]
	for i := uint64(0); i < c.Size; i += 7 {
		p, err := l.InclusionProof(i, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := l.LeafHash(i)
		if err := proof.VerifyInclusion(hasher, i, c.Size, leaf, p, c.Root); err != nil {
			t.Fatalf("inclusion of %d in checkpoint %d: %v", i, c.Size, err)
		}
	}
}
