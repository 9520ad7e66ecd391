package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"filippo.io/age"
	"golang.org/x/sys/unix"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// The spool: instances received over DIMSE are written here, one file each,
// encrypted to the facility and synced, before the sender is told they are
// stored; they are committed to the archive, one transaction per study,
// once the association ends. A crash in between leaves them in the spool,
// and the next run commits them. An association thus makes one study
// version and one registry publication, not one per instance.
//
// The files are made ahead, spoolBatch at a time with one sync of the
// folder, so that an instance costs one data sync, not a file's and its
// folder's. An instance is acknowledged once its file is synced; a file
// that is empty was never used, and one that does not decrypt was being
// written when the process died and was never acknowledged: age's final
// chunk authenticates the end. (Appending to one file per association
// measured slower here: 1.37-1.41 s against 1.08 s for 100 CT slices.)
func (n *Node) spoolDir(assoc string) string { return n.Home.Path(filepath.Join("spool", assoc)) }

// spoolBatch is how many spool files are made ahead at a time.
const spoolBatch = 64

// spoolFile returns an unused spool file of the association, making a
// batch when none is left.
func (n *Node) spoolFile(assoc string) (string, error) {
	n.slotsMu.Lock()
	defer n.slotsMu.Unlock()
	if n.slots == nil {
		n.slots = map[string][]string{}
	}
	if len(n.slots[assoc]) == 0 {
		dir := n.spoolDir(assoc)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		var rnd [6]byte
		rand.Read(rnd[:])
		for i := range spoolBatch {
			name := filepath.Join(dir, fmt.Sprintf("%x-%03d.age", rnd, i))
			f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return "", err
			}
			f.Close()
			n.slots[assoc] = append(n.slots[assoc], name)
		}
		if err := syncDir(dir); err != nil {
			n.slots[assoc] = nil
			return "", err
		}
	}
	name := n.slots[assoc][0]
	n.slots[assoc] = n.slots[assoc][1:]
	return name, nil
}

// spoolBuffers keep the ciphertext of instances being spooled.
var spoolBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Spool keeps one received instance durably, encrypted.
func (n *Node) Spool(_ context.Context, assoc string, data []byte) error {
	buf := spoolBuffers.Get().(*bytes.Buffer)
	defer spoolBuffers.Put(buf)
	buf.Reset()
	// age adds a header and 16 bytes a 64 KiB chunk: grown once.
	buf.Grow(len(data) + len(data)/(64<<10)*16 + 1024)
	w, err := age.Encrypt(buf, n.Identity.Recipient())
	if err != nil {
		return err
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		return err
	}
	name, err := n.spoolFile(assoc)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = unix.Fdatasync(int(f.Fd()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Not acknowledged: the file is emptied so that it reads as unused.
		os.Truncate(name, 0)
		return err
	}
	return nil
}

// CommitSpool commits an association's spooled instances to the archive,
// one transaction per study, then deletes them.
func (n *Node) CommitSpool(ctx context.Context, assoc string) error {
	dir := n.spoolDir(assoc)
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	txs := map[string]*archive.Tx{}
	var studies []string
	fail := func(err error) error {
		for _, tx := range txs {
			tx.Rollback()
		}
		return fmt.Errorf("commit spooled instances of %s: %w", assoc, err)
	}
	n.slotsMu.Lock()
	delete(n.slots, assoc)
	n.slotsMu.Unlock()
	for _, e := range es {
		info, err := e.Info()
		if filepath.Ext(e.Name()) != ".age" || err == nil && info.Size() == 0 {
			continue // made ahead and never used
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return fail(err)
		}
		r, err := age.Decrypt(f, n.Identity.AgeIdentity())
		var data []byte
		if err == nil {
			data, err = io.ReadAll(r)
		}
		f.Close()
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
			n.log.Warn("a spooled instance does not decrypt (cut short by a crash?); set aside in spool-damaged", "assoc", assoc, "err", err)
			continue
		}
		m, err := ingest.Parse(data)
		if err != nil {
			n.log.Warn("a spooled instance does not parse; it is dropped", "assoc", assoc, "err", err)
			continue
		}
		tx := txs[m.StudyInstanceUID]
		if tx == nil {
			if tx, err = n.Archive.Begin(m.StudyInstanceUID); err != nil {
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
			return fmt.Errorf("commit spooled study %s: %w", uid, err)
		}
		if st.UID != "" {
			committed = append(committed, st)
		}
	}
	if err := n.queuePublish(committed); err != nil {
		n.log.Warn("spooled studies stored but not queued for publication", "err", err)
	}
	return os.RemoveAll(dir)
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
