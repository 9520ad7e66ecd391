package registry

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// checkpointOf signs a tlog checkpoint of tree at size as m's audit log.
func checkpointOf(t *testing.T, m member, tree *testonly.Tree, size uint64) *Checkpoint {
	t.Helper()
	root := tree.HashAt(size)
	text := fmt.Sprintf("%s\n%d\n%s\n", AuditOrigin(m.fid), size, encodeRoot(root))
	signed, err := note.Sign(&note.Note{Text: text}, edSigner{AuditOrigin(m.fid), m.id.PrivateSignKey()})
	if err != nil {
		t.Fatal(err)
	}
	return &Checkpoint{Note: signed, Size: size, Root: root}
}

// edSigner is a signed-note Ed25519 signer (note.Signer).
type edSigner struct {
	name string
	key  ed25519.PrivateKey
}

func (s edSigner) Name() string { return s.name }

// KeyHash is the note package's key hash: the first four bytes of
// SHA-256(name, "\n", algorithm 1, public key).
func (s edSigner) KeyHash() uint32 {
	h := sha256.New()
	h.Write([]byte(s.name + "\n"))
	h.Write(append([]byte{1}, s.key.Public().(ed25519.PublicKey)...))
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func (s edSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// TestAnchorAuditCheckpoint: a facility's checkpoints are accepted while its
// log only grows, with a consistency proof; a shrinking or forked log, a
// bad proof or a note signed by another key is refused.
func TestAnchorAuditCheckpoint(t *testing.T) {
	w := newWorld(t)
	b := newMember(t)
	w.admit(t, b, "Regional")
	tree := testonly.New(rfc6962.DefaultHasher)
	for i := range 20 {
		tree.AppendData([]byte(fmt.Sprint("record ", i)))
	}
	at := t0.Add(time.Minute)
	w.ok(t, w.a.sign(t, KindAnchorAuditCheckpoint, checkpointOf(t, w.a, tree, 10), at))
	c15 := checkpointOf(t, w.a, tree, 15)
	c15.Proof, _ = tree.ConsistencyProof(10, 15)
	w.ok(t, w.a.sign(t, KindAnchorAuditCheckpoint, c15, at))
	if cs := w.f.Checkpoints(w.a.fid); len(cs) != 2 || cs[1].Size != 15 {
		t.Fatalf("anchored %+v", cs)
	}

	shrink := checkpointOf(t, w.a, tree, 12)
	w.want(t, w.a.sign(t, KindAnchorAuditCheckpoint, shrink, at), CodeConflict)

	forked := testonly.New(rfc6962.DefaultHasher)
	for i := range 20 {
		forked.AppendData([]byte(fmt.Sprint("edited record ", i)))
	}
	w.want(t, w.a.sign(t, KindAnchorAuditCheckpoint, checkpointOf(t, w.a, forked, 15), at), CodeConflict)
	fork20 := checkpointOf(t, w.a, forked, 20)
	fork20.Proof, _ = forked.ConsistencyProof(15, 20)
	w.want(t, w.a.sign(t, KindAnchorAuditCheckpoint, fork20, at), CodeConflict)

	noProof := checkpointOf(t, w.a, tree, 20)
	w.want(t, w.a.sign(t, KindAnchorAuditCheckpoint, noProof, at), CodeConflict)

	// b cannot anchor a checkpoint of a's log, nor its own signed by a.
	w.want(t, b.sign(t, KindAnchorAuditCheckpoint, checkpointOf(t, w.a, tree, 20), at), CodeBadSignature)

	good := checkpointOf(t, w.a, tree, 20)
	good.Proof, _ = tree.ConsistencyProof(15, 20)
	w.ok(t, w.a.sign(t, KindAnchorAuditCheckpoint, good, at))
}
