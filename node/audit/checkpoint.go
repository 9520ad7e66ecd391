package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// ErrBadCheckpoint reports a checkpoint that does not parse, is not signed
// by the expected key or names another origin.
var ErrBadCheckpoint = errors.New("audit: bad checkpoint")

// Checkpoint is a signed statement of the log's size and root hash: the
// body of c2sp.org/tlog-checkpoint ("<origin>\n<size>\n<base64 root>\n")
// wrapped in a c2sp.org/signed-note signed with the facility's Ed25519 key
// under the key name Origin.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte // 32 bytes
	Note   []byte // the signed note, as written and as anchored
}

// String is the checkpoint's first three lines on one line, for messages.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// body returns the tlog-checkpoint note text.
func checkpointBody(origin string, size uint64, root []byte) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
}

// newSigner returns a note signer for key under name.
func newSigner(name string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("audit: signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	vkey, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	// The signer key is "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>",
	// where 0x01 is the note format's Ed25519 algorithm byte and the hash is
	// the one in the verifier key "<name>+<hash>+<key>".
	_, hash, _ := strings.Cut(vkey, "+")
	hash, _, _ = strings.Cut(hash, "+")
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%s+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
	return note.NewSigner(skey)
}

// NewVerifier returns the note verifier for checkpoints of origin signed by
// pub.
func NewVerifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier for %s: %w", origin, err)
	}
	return note.NewVerifier(vkey)
}

// signCheckpoint signs the checkpoint of a tree.
func signCheckpoint(s note.Signer, size uint64, root []byte) (Checkpoint, error) {
	n, err := note.Sign(&note.Note{Text: checkpointBody(s.Name(), size, root)}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return Checkpoint{Origin: s.Name(), Size: size, Root: bytes.Clone(root), Note: n}, nil
}

// OpenCheckpoint verifies a signed checkpoint note against v and parses it.
// The origin line must equal v's name. Errors wrap ErrBadCheckpoint.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	c, err := parseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrBadCheckpoint, c.Origin, v.Name())
	}
	c.Note = bytes.Clone(signed)
	return c, nil
}

// parseCheckpointBody parses the tlog-checkpoint text: origin, decimal size
// without leading zeros, base64 root of 32 bytes, then optional extension
// lines, which are ignored.
func parseCheckpointBody(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return Checkpoint{}, fmt.Errorf("%w: fewer than three lines", ErrBadCheckpoint)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("%w: tree size %q", ErrBadCheckpoint, sizeText)
	}
	rootText := strings.TrimSuffix(lines[2], "\n")
	root, err := base64.StdEncoding.Strict().DecodeString(rootText)
	if err != nil || len(root) != hashSize {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q", ErrBadCheckpoint, rootText)
	}
	if origin == "" {
		return Checkpoint{}, fmt.Errorf("%w: empty origin", ErrBadCheckpoint)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// VerifyConsistency checks that newer extends older: the consistency proof
// (from Log.ConsistencyProof(older.Size, newer.Size)) links their roots. Two
// checkpoints of one size must have equal roots, and newer may not be
// smaller. This is what a member that holds a facility's anchored
// checkpoints, but not its log, checks. The checkpoints' signatures are not
// checked here (OpenCheckpoint does that).
func VerifyConsistency(older, newer Checkpoint, consistency [][]byte) error {
	if newer.Size < older.Size {
		return fmt.Errorf("%w: checkpoint shrinks from %d to %d", ErrTampered, older.Size, newer.Size)
	}
	if err := proof.VerifyConsistency(hasher, older.Size, newer.Size, consistency, older.Root, newer.Root); err != nil {
		if older.Size == newer.Size {
			return fmt.Errorf("%w: fork: two checkpoints of size %d with different roots", ErrTampered, older.Size)
		}
		return fmt.Errorf("%w: checkpoint of size %d does not extend the one of size %d: %w", ErrTampered, newer.Size, older.Size, err)
	}
	return nil
}
