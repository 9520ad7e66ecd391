package node

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node/archive"
)

// receiving is a study being pulled.
type receiving struct {
	pre  *archive.Precheck
	from archive.Origin
}

// receivingStudy returns the study being pulled with the given UID, with
// the instances checked so far, as local systems see it.
func (n *Node) receivingStudy(uid string) (archive.Study, *archive.Precheck, bool) {
	var st archive.Study
	var pre *archive.Precheck
	n.receiving.Range(func(_, v any) bool {
		r := v.(*receiving)
		s, ok := r.pre.Study()
		if !ok || s.UID != uid {
			return true
		}
		s.Source, s.SourceManifest = r.from.Facility, r.from.Manifest
		s.LocalPatientID, s.LocalIssuer = r.from.LocalPatientID, r.from.LocalIssuer
		st, pre = s, r.pre
		return false
	})
	return st, pre, pre != nil
}

// receive fetches the study a grant opens from sources (the owner first,
// then other holders) and commits it to the archive: every block verified
// on arrival and kept, so that an interrupted receive resumes; every
// instance decrypted and checked against the detail manifest before the
// study becomes visible, all or nothing, with its audit record.
func (n *Node) receive(ctx context.Context, h host.Host, g access.Grant, from archive.Origin, sources []peer.ID, progress func(blocks.Progress)) (archive.Study, error) {
	fail := func(err error) (archive.Study, error) {
		return archive.Study{}, fmt.Errorf("receive manifest %s: %w", g.Manifest, err)
	}
	key, err := crypto.OpenStudyKey(g.SealedKey, n.Identity.AgeIdentity())
	if err != nil {
		return fail(err)
	}
	root, err := cid.Decode(g.Root)
	if err != nil {
		return fail(err)
	}
	if err := n.Archive.BeginReceive(root); err != nil {
		return fail(err)
	}
	rcv := n.Archive.Receiver()
	start := time.Now()
	// The root block, then the detail manifest and the first instance,
	// then the rest: with the manifest first, the instances are checked,
	// and readable, while their blocks arrive (dag-pb sorts the manifest's
	// link last, so a plain fetch brings it last).
	var early int64 // blocks fetched before the rest, for the progress
	fetchEarly := func(c cid.Cid, shallow bool) error {
		var got int64
		err := (&blocks.Fetcher{H: h, Local: rcv, Shallow: shallow, Progress: func(p blocks.Progress) { got = p.Fetched }}).Fetch(ctx, c, sources)
		early += got
		return err
	}
	err = fetchEarly(root, true)
	if err == nil {
		var m, first cid.Cid
		if m, first, err = n.Archive.ManifestRoot(ctx, root); err == nil {
			if err = fetchEarly(m, false); err == nil {
				err = fetchEarly(first, false)
			}
		}
	}
	if err != nil {
		rcv.Sync()
		return fail(err)
	}
	pre := n.Archive.Precheck(ctx, root, key, rcv)
	n.receiving.Store(root, &receiving{pre: pre, from: from})
	defer n.receiving.Delete(root)
	f := &blocks.Fetcher{H: h, Local: rcv, Progress: func(p blocks.Progress) {
		pre.Arrived()
		if progress != nil {
			p.Fetched += early
			progress(p)
		}
	}}
	err = f.Fetch(ctx, root, sources)
	if checked, first := pre.Stop(); checked > 0 {
		n.log.Info("received instances checked during the fetch", "manifest", g.Manifest, "checked", checked,
			"first_after", first.Sub(start).Round(time.Millisecond).String(), "fetch", time.Since(start).Round(time.Millisecond).String())
	}
	// What was verified is made durable either way, for the next attempt.
	if serr := rcv.Sync(); err == nil {
		err = serr
	}
	if err != nil {
		return fail(err)
	}
	return n.Archive.CommitReceived(ctx, root, key, from)
}
