package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"filippo.io/age"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// The spool: instances received over DIMSE are written here, one file each,
// encrypted to the facility and synced, before the sender is told they are
// stored; they are committed to the archive, one transaction per study,
// when the association ends. A crash in between leaves them in the spool,
// and the next run commits them. An association thus makes one study
// version and one registry publication, not one per instance. (Appending
// to one synced file per association measured slower here: 1.37-1.41 s
// against 1.08 s for 100 CT slices.)
func (n *Node) spoolDir(assoc string) string { return n.Home.Path(filepath.Join("spool", assoc)) }

// Spool keeps one received instance durably, encrypted.
func (n *Node) Spool(_ context.Context, assoc string, data []byte) error {
	dir := n.spoolDir(assoc)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, n.Identity.Recipient())
	if err != nil {
		return err
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		return err
	}
	// Written under a temporary name and renamed once synced, so that a
	// file with the final name is complete.
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, filepath.Base(f.Name())[len(".tmp-"):]+".age"))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
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
	for _, e := range es {
		if filepath.Ext(e.Name()) != ".age" {
			continue // a temporary file: a write that was never acknowledged
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
			return fail(err)
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
