package audit

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// hasher is the RFC 6962 hasher over SHA-256: leaves are SHA-256(0x00 ||
// record), interior nodes SHA-256(0x01 || left || right).
var hasher = rfc6962.New(crypto.SHA256)

const hashSize = 32

// leafHash returns the Merkle leaf hash of a record encoding.
func leafHash(record []byte) [hashSize]byte { return [hashSize]byte(hasher.HashLeaf(record)) }

// errTreeRange reports a size or index beyond the tree.
var errTreeRange = errors.New("beyond the tree")

// tree keeps every complete subtree hash of an RFC 6962 Merkle tree in
// memory: level 0 holds the leaf hashes, level h the hashes of the complete
// subtrees of 2^h leaves, flat, 32 bytes each. Appending is O(log n), a root
// of any earlier size O(log n), and proofs read stored nodes only. A million
// leaves take about 64 MB.
type tree struct {
	levels [][]byte
}

func (t *tree) size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]) / hashSize)
}

func (t *tree) node(level uint, index uint64) []byte {
	i := index * hashSize
	return t.levels[level][i : i+hashSize : i+hashSize]
}

// append adds a leaf hash and the complete subtrees it finishes.
func (t *tree) append(leaf []byte) {
	h := leaf
	for level := 0; ; level++ {
		if level == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[level] = append(t.levels[level], h...)
		n := len(t.levels[level]) / hashSize
		if n%2 == 1 {
			return
		}
		l := t.levels[level][(n-2)*hashSize : (n-1)*hashSize]
		h = hasher.HashChildren(l, t.levels[level][(n-1)*hashSize:])
	}
}

// truncate drops leaves beyond size.
func (t *tree) truncate(size uint64) {
	for level := range t.levels {
		n := size >> uint(level)
		if uint64(len(t.levels[level])/hashSize) > n {
			t.levels[level] = t.levels[level][:n*hashSize]
		}
	}
}

// leaf returns the hash of leaf i.
func (t *tree) leaf(i uint64) []byte { return t.node(0, i) }

// root returns the root hash of the first size leaves.
func (t *tree) root(size uint64) ([]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("root of size %d: %w of size %d", size, errTreeRange, t.size())
	}
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	// The perfect subtrees of [0, size), left to right, are the set bits of
	// size from the highest; fold them from the right.
	var r []byte
	var begin uint64
	var stack [][]byte
	for level := 63; level >= 0; level-- {
		if size&(1<<uint(level)) != 0 {
			stack = append(stack, t.node(uint(level), begin>>uint(level)))
			begin += 1 << uint(level)
		}
	}
	r = stack[len(stack)-1]
	for i := len(stack) - 2; i >= 0; i-- {
		r = hasher.HashChildren(stack[i], r)
	}
	return r, nil
}

// hashes returns the stored hashes of the given complete nodes.
func (t *tree) hashes(ids []compact.NodeID) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = t.node(id.Level, id.Index)
	}
	return out
}

// inclusion returns the inclusion proof of leaf index in the tree of size
// leaves (RFC 6962 section 2.1.1).
func (t *tree) inclusion(index, size uint64) ([][]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("inclusion proof at size %d: %w of size %d", size, errTreeRange, t.size())
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(t.hashes(nodes.IDs), hasher.HashChildren)
}

// consistency returns the consistency proof between the trees of size1 and
// size2 leaves (RFC 6962 section 2.1.2).
func (t *tree) consistency(size1, size2 uint64) ([][]byte, error) {
	if size2 > t.size() {
		return nil, fmt.Errorf("consistency proof to size %d: %w of size %d", size2, errTreeRange, t.size())
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(t.hashes(nodes.IDs), hasher.HashChildren)
}
