package node

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/dimse"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// The spool: instances received over DIMSE are written here, one file each,
// encrypted and synced, before the sender is told they are stored; they are
// committed to the archive, one transaction per study, once the association
// ends. A crash in between leaves them in the spool, and the next run
// commits them. An association thus makes one study version and one
// registry publication, not one per instance.
//
// An association's files are age files encrypted to its own random key (a
// crypto.SymmetricKey), kept in the folder sealed to the facility's age
// recipient: one X25519 operation per association, not one per instance.
// The files are made ahead and kept open, spoolBatch at a time with one
// sync of the folder, so that an instance costs its writes and one data
// sync, not a file's creation and its folder's sync. An instance is
// compressed (spoolblocks.go), encrypted and written as its PDUs arrive, so
// that only the last block and the sync are left once the last PDU is in,
// and the sync writes about half the instance's size. It is acknowledged
// once its file is synced; a file that is empty was never used, and one
// that does not decrypt was being written when the process died and was
// never acknowledged. (Measured here and left out: appending to one file per
// association, 1.37-1.41 s against 1.08 s for 100 CT slices; starting the
// disk's writeback behind each chunk with sync_file_range, from the
// receiving goroutine or another: 400 slices in 0.99-1.40 s against
// 0.86-0.93 s without, three runs each; files whose blocks were written
// ahead, so that an instance overwrites them: a sync of 1.06 ms against
// 0.99 ms for fresh files, the means of an association.)
func (n *Node) spoolDir(assoc string) string { return n.Home.Path(filepath.Join("spool", assoc)) }

// spoolBatch is how many spool files are made ahead at a time.
const spoolBatch = 64

const (
	spoolKeyFile = "key.age"            // the association's key, sealed to the facility
	spoolSuffix  = ".dcm.enc"           // a spooled instance
	spoolMagic   = "dicomesh-spool-3\n" // starts every spooled instance: an age file of its blocks follows (spoolblocks.go)
	// Instances spooled by earlier versions are still committed after an
	// upgrade: spoolMagic2 files hold an age file of the instance,
	// spoolMagic1 files one XChaCha20-Poly1305 seal, both under the
	// association's key; legacySpoolSuffix files are age files sealed to
	// the facility.
	spoolMagic2       = "dicomesh-spool-2\n"
	spoolMagic1       = "dicomesh-spool-1\n"
	spoolAD1          = "dicomesh spooled instance"
	legacySpoolSuffix = ".age"
)

// spoolKey is an association's key, in the forms its files use.
type spoolKey struct {
	sym *crypto.SymmetricKey
	v1  cipher.AEAD
}

func newSpoolKeyFrom(key []byte) (*spoolKey, error) {
	sym, err := crypto.NewSymmetricKey(key)
	if err != nil {
		return nil, err
	}
	v1, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	return &spoolKey{sym: sym, v1: v1}, nil
}

// spoolSlots are an association's spool key and its files made ahead.
type spoolSlots struct {
	key   *spoolKey
	files []*os.File // open for writing, empty
}

// close closes the files made ahead and not used.
func (s *spoolSlots) close() {
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
}

// spoolFile returns the association's key and an unused spool file, open
// for writing, making the key and a batch of files when none is left.
func (n *Node) spoolFile(assoc string) (*spoolKey, *os.File, error) {
	n.slotsMu.Lock()
	defer n.slotsMu.Unlock()
	if n.slots == nil {
		n.slots = map[string]*spoolSlots{}
	}
	sl := n.slots[assoc]
	if sl == nil {
		sl = &spoolSlots{}
		n.slots[assoc] = sl
	}
	if len(sl.files) == 0 {
		dir := n.spoolDir(assoc)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, err
		}
		if sl.key == nil {
			key, err := n.newSpoolKey(dir)
			if err != nil {
				return nil, nil, err
			}
			sl.key = key
		}
		var rnd [6]byte
		rand.Read(rnd[:])
		for i := range spoolBatch {
			name := filepath.Join(dir, fmt.Sprintf("%x-%03d%s", rnd, i, spoolSuffix))
			f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				sl.close()
				return nil, nil, err
			}
			sl.files = append(sl.files, f)
		}
		if err := syncDir(dir); err != nil {
			sl.close()
			return nil, nil, err
		}
	}
	f := sl.files[0]
	sl.files = sl.files[1:]
	return sl.key, f, nil
}

// newSpoolKey makes an association's key and keeps it in dir, sealed to
// the facility and synced.
func (n *Node) newSpoolKey(dir string) (*spoolKey, error) {
	key := make([]byte, crypto.SymmetricKeySize)
	rand.Read(key)
	sealed, err := crypto.Seal(key, n.Identity.Recipient())
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, spoolKeyFile), sealed, 0o600); err != nil {
		return nil, err
	}
	return newSpoolKeyFrom(key)
}

// openSpoolKey reads an association's key.
func (n *Node) openSpoolKey(dir string) (*spoolKey, error) {
	sealed, err := os.ReadFile(filepath.Join(dir, spoolKeyFile))
	if err != nil {
		return nil, err
	}
	key, err := crypto.Open(sealed, n.Identity.AgeIdentity(), crypto.SymmetricKeySize)
	if err != nil {
		return nil, err
	}
	return newSpoolKeyFrom(key)
}

// BeginSpool starts keeping one instance of an association; its bytes are
// written to the returned file as they arrive (dimse.Spooler).
func (n *Node) BeginSpool(_ context.Context, assoc string) (dimse.SpoolFile, error) {
	key, f, err := n.spoolFile(assoc)
	if err != nil {
		return nil, err
	}
	sp := &spooling{f: f}
	if _, err := f.Write([]byte(spoolMagic)); err != nil {
		sp.Discard()
		return nil, err
	}
	if sp.enc, err = key.sym.Encrypt(f); err != nil {
		sp.Discard()
		return nil, err
	}
	sp.blocks = newBlockWriter(sp.enc)
	return sp, nil
}

// Spool keeps one received instance durably, encrypted: BeginSpool, its
// bytes, Keep.
func (n *Node) Spool(ctx context.Context, assoc string, data []byte) error {
	sp, err := n.BeginSpool(ctx, assoc)
	if err != nil {
		return err
	}
	if _, err := sp.Write(data); err != nil {
		sp.Discard()
		return err
	}
	return sp.Keep()
}

// spooling is an instance being written to its spool file.
type spooling struct {
	f      *os.File
	enc    io.WriteCloser // the age stream, writing to f
	blocks *blockWriter   // compressing into enc
}

func (s *spooling) Write(p []byte) (int, error) { return s.blocks.Write(p) }

// Keep writes the last block and chunk and syncs the file.
func (s *spooling) Keep() error {
	err := s.blocks.Flush()
	if err == nil {
		err = s.enc.Close()
	}
	if err == nil {
		err = unix.Fdatasync(int(s.f.Fd()))
	}
	if err != nil {
		s.Discard()
		return err
	}
	s.blocks.release()
	s.f.Close() // the instance is durable: a failed close changes nothing
	return nil
}

// Discard empties the file, so that it reads as unused.
func (s *spooling) Discard() {
	if s.blocks != nil {
		s.blocks.release()
	}
	s.f.Truncate(0)
	s.f.Close()
}

// readSpooled returns the instance in a spool file; an error when it does
// not decrypt (it was being written when the process died).
func (n *Node) readSpooled(path string, key *spoolKey) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, legacySpoolSuffix):
		return crypto.Open(b, n.Identity.AgeIdentity(), len(b))
	case key == nil:
		return nil, errors.New("no key for the association's instances")
	case bytes.HasPrefix(b, []byte(spoolMagic)):
		blocks, err := crypto.Open(b[len(spoolMagic):], key.sym, len(b))
		if err != nil {
			return nil, err
		}
		return readBlocks(blocks)
	case bytes.HasPrefix(b, []byte(spoolMagic2)):
		return crypto.Open(b[len(spoolMagic2):], key.sym, len(b))
	case bytes.HasPrefix(b, []byte(spoolMagic1)):
		b = b[len(spoolMagic1):]
		if len(b) < key.v1.NonceSize() {
			return nil, errors.New("spooled instance cut short")
		}
		return key.v1.Open(b[key.v1.NonceSize():key.v1.NonceSize()], b[:key.v1.NonceSize()], b[key.v1.NonceSize():], []byte(spoolAD1))
	}
	return nil, errors.New("not a spooled instance")
}

// CommitSpool commits an association's spooled instances to the archive,
// one transaction per study, then deletes them. A study that another
// writer has open (another association sending the same study, a STOW-RS
// request) is waited for.
func (n *Node) CommitSpool(ctx context.Context, assoc string) error {
	for {
		busy, err := n.commitSpool(ctx, assoc)
		if err != nil || busy == "" {
			return err
		}
		// Every transaction of this commit was rolled back, so that two
		// commits never wait for each other: wait for the study's writer,
		// then start again.
		if err := n.Archive.Idle(ctx, busy); err != nil {
			return fmt.Errorf("commit spooled instances of %s: %w", assoc, err)
		}
	}
}

// commitSpool is one attempt of CommitSpool. It returns the UID of a study
// another writer has open, having rolled back what it began, or "" once
// the instances are committed.
func (n *Node) commitSpool(ctx context.Context, assoc string) (busy string, err error) {
	dir := n.spoolDir(assoc)
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	txs := map[string]*archive.Tx{}
	var studies []string
	rollback := func() {
		for _, tx := range txs {
			tx.Rollback()
		}
	}
	fail := func(err error) (string, error) {
		rollback()
		return "", fmt.Errorf("commit spooled instances of %s: %w", assoc, err)
	}
	n.slotsMu.Lock()
	if sl := n.slots[assoc]; sl != nil {
		sl.close()
	}
	delete(n.slots, assoc)
	n.slotsMu.Unlock()
	// Without its key (a crash before the key was synced) no instance was
	// acknowledged: every file is set aside below.
	key, kerr := n.openSpoolKey(dir)
	if kerr != nil && !errors.Is(kerr, os.ErrNotExist) {
		n.log.Warn("the spool key of an association does not open", "assoc", assoc, "err", kerr)
	}
	for _, e := range es {
		info, err := e.Info()
		spooled := strings.HasSuffix(e.Name(), spoolSuffix) || strings.HasSuffix(e.Name(), legacySpoolSuffix) && e.Name() != spoolKeyFile
		if !spooled || err == nil && info.Size() == 0 {
			continue // the key, or made ahead and never used
		}
		data, err := n.readSpooled(filepath.Join(dir, e.Name()), key)
		if err != nil {
			// Most likely being written when the process died, so never
			// acknowledged; it is set aside, not deleted, all the same.
			aside := n.Home.Path("spool-damaged")
			if merr := os.MkdirAll(aside, 0o700); merr != nil {
				return fail(merr)
			}
			if merr := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(aside, assoc+"-"+e.Name())); merr != nil {
				return fail(merr)
			}
			n.log.Warn("a spooled instance does not decrypt or decode (cut short by a crash?); set aside in spool-damaged", "assoc", assoc, "err", err)
			continue
		}
		m, err := ingest.Parse(data)
		if err != nil {
			n.log.Warn("a spooled instance does not parse; it is dropped", "assoc", assoc, "err", err)
			continue
		}
		tx := txs[m.StudyInstanceUID]
		if tx == nil {
			tx, err = n.Archive.Begin(m.StudyInstanceUID)
			if errors.Is(err, archive.ErrBusy) {
				rollback()
				return m.StudyInstanceUID, nil
			}
			if err != nil {
				return fail(err)
			}
			txs[m.StudyInstanceUID] = tx
			studies = append(studies, m.StudyInstanceUID)
		}
		if _, err := tx.Add(ctx, m, data); err != nil {
			return fail(err)
		}
	}
	slices.Sort(studies)
	var committed []archive.Study
	for i, uid := range studies {
		st, err := txs[uid].Commit(ctx)
		if err != nil {
			for _, rest := range studies[i+1:] {
				txs[rest].Rollback()
			}
			return "", fmt.Errorf("commit spooled study %s: %w", uid, err)
		}
		if st.UID != "" {
			committed = append(committed, st)
		}
	}
	if err := n.queuePublish(committed); err != nil {
		n.log.Warn("spooled studies stored but not queued for publication", "err", err)
	}
	return "", os.RemoveAll(dir)
}

// recoverSpool commits what a previous run spooled and did not commit.
func (n *Node) recoverSpool(ctx context.Context) {
	es, err := os.ReadDir(n.Home.Path("spool"))
	if err != nil {
		return
	}
	for _, e := range es {
		if err := n.CommitSpool(ctx, e.Name()); err != nil {
			n.log.Error("cannot commit spooled instances", "assoc", e.Name(), "err", err)
		}
	}
}
