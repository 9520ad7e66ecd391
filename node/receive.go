package node

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node/archive"
)

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
	f := &blocks.Fetcher{H: h, Local: rcv, Progress: progress}
	err = f.Fetch(ctx, root, sources)
	// What was verified is made durable either way, for the next attempt.
	if serr := rcv.Sync(); err == nil {
		err = serr
	}
	if err != nil {
		return fail(err)
	}
	return n.Archive.CommitReceived(ctx, root, key, from)
}
