package audit

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/testonly"
)

// TestTreeVectors checks roots against the RFC 6962 vectors that
// transparency-dev/merkle ships.
func TestTreeVectors(t *testing.T) {
	var tr tree
	leaves := testonly.LeafInputs()
	roots := testonly.RootHashes()
	if !bytes.Equal(mustRoot(t, &tr, 0), testonly.EmptyRootHash()) {
		t.Fatal("empty root differs from the vector")
	}
	for i, leaf := range leaves {
		tr.append(hasher.HashLeaf(leaf))
		for size := uint64(1); size <= uint64(i+1); size++ {
			if got := mustRoot(t, &tr, size); !bytes.Equal(got, roots[size]) {
				t.Fatalf("after %d leaves, root(%d) = %x, want %x", i+1, size, got, roots[size])
			}
		}
	}
	// Every complete subtree hash is stored.
	for level, nodes := range testonly.NodeHashes() {
		for i, want := range nodes {
			if got := tr.node(uint(level), uint64(i)); !bytes.Equal(got, want) {
				t.Errorf("node(%d, %d) = %x, want %x", level, i, got, want)
			}
		}
	}
}

func mustRoot(t *testing.T, tr *tree, size uint64) []byte {
	t.Helper()
	r, err := tr.root(size)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTreeProofs compares every proof with the reference tree and checks it
// with the library's verifier.
func TestTreeProofs(t *testing.T) {
	const n = 70
	var tr tree
	ref := testonly.New(hasher)
	for i := range n {
		leaf := []byte(fmt.Sprintf("leaf %d", i))
		tr.append(hasher.HashLeaf(leaf))
		ref.AppendData(leaf)
	}
	for size := uint64(1); size <= n; size++ {
		root := mustRoot(t, &tr, size)
		if !bytes.Equal(root, ref.HashAt(size)) {
			t.Fatalf("root(%d) differs from the reference tree", size)
		}
		for i := uint64(0); i < size; i++ {
			p, err := tr.inclusion(i, size)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ref.InclusionProof(i, size)
			if !equalProofs(p, want) {
				t.Fatalf("inclusion(%d, %d) differs from the reference", i, size)
			}
			if err := proof.VerifyInclusion(hasher, i, size, tr.leaf(i), p, root); err != nil {
				t.Fatalf("inclusion(%d, %d): %v", i, size, err)
			}
		}
		for s1 := uint64(0); s1 <= size; s1++ {
			p, err := tr.consistency(s1, size)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ref.ConsistencyProof(s1, size)
			if !equalProofs(p, want) {
				t.Fatalf("consistency(%d, %d) differs from the reference", s1, size)
			}
			if err := proof.VerifyConsistency(hasher, s1, size, p, mustRoot(t, &tr, s1), root); err != nil {
				t.Fatalf("consistency(%d, %d): %v", s1, size, err)
			}
		}
	}
	if _, err := tr.root(n + 1); err == nil {
		t.Error("root beyond the tree: no error")
	}
	if _, err := tr.consistency(1, n+1); err == nil {
		t.Error("consistency beyond the tree: no error")
	}
}

func equalProofs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestTreeTruncate(t *testing.T) {
	var a, b tree
	for i := range 37 {
		h := hasher.HashLeaf([]byte{byte(i)})
		a.append(h)
		if i < 20 {
			b.append(h)
		}
	}
	a.truncate(20)
	if a.size() != 20 || !bytes.Equal(mustRoot(t, &a, 20), mustRoot(t, &b, 20)) {
		t.Fatal("truncated tree differs from one built to that size")
	}
	for i := range 5 {
		h := hasher.HashLeaf([]byte{0xff, byte(i)})
		a.append(h)
		b.append(h)
	}
	if !bytes.Equal(mustRoot(t, &a, 25), mustRoot(t, &b, 25)) {
		t.Fatal("appending after truncate diverges")
	}
}
