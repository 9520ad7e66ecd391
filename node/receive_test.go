package node

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
)

// TestReceiveFromOwner: a study granted by its owner is fetched over real
// libp2p hosts, verified, committed and audited as received from the owner,
// and reads back byte for byte.
func TestReceiveFromOwner(t *testing.T) {
	ctx := context.Background()
	owner, recv := openTestNode(t), openTestNode(t)
	rep, err := owner.Ingest(ctx, nil, writeStudy(t, "mr"))
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Studies[0]
	ho, err := newHost(hostConfig{identity: owner.Identity, listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ho.Close()
	hr, err := newHost(hostConfig{identity: recv.Identity, listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Close()
	blocks.Serve(ho, owner.Archive.Blockstore(), func(p peer.ID) bool { return p == hr.ID() })
	if err := hr.Connect(ctx, peer.AddrInfo{ID: ho.ID(), Addrs: ho.Addrs()}); err != nil {
		t.Fatal(err)
	}
	key, err := owner.Archive.StudyKey(st.UID)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := key.Seal(recv.Identity.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	g := access.Grant{Manifest: "m1", Root: st.Root.String(), SealedKey: sealed}
	rctx := WithActor(ctx, audit.Actor{User: "dr.b", Purpose: "TREAT"})
	got, err := recv.receive(rctx, hr, g, archive.Origin{Facility: ho.ID().String(), Manifest: "m1"}, []peer.ID{ho.ID()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != ho.ID().String() || got.Instances != st.Instances {
		t.Fatalf("received %+v", got)
	}
	full, _ := owner.Archive.Study(st.UID)
	for _, se := range full.Series {
		for _, in := range se.Instances {
			a, b := read(t, owner, st.UID, in.SOPInstanceUID), read(t, recv, st.UID, in.SOPInstanceUID)
			if !bytes.Equal(a, b) {
				t.Fatalf("instance %s differs", in.SOPInstanceUID)
			}
		}
	}
	recs, err := recv.Audit.Search(ctx, audit.Actor{User: "officer"}, audit.Query{Event: audit.EventInstancesTransfer})
	if err != nil || len(recs) != 1 || recs[0].Peer != ho.ID().String() || recs[0].User != "dr.b" || recs[0].Study != st.UID {
		t.Fatalf("receiver's audit: %+v %v", recs, err)
	}
	// A grant sealed to someone else opens nothing.
	other, _ := key.Seal(owner.Identity.Recipient())
	if _, err := recv.receive(rctx, hr, access.Grant{Manifest: "m1", Root: st.Root.String(), SealedKey: other}, archive.Origin{Facility: ho.ID().String()}, []peer.ID{ho.ID()}, nil); err == nil {
		t.Fatal("received with a key sealed to another facility")
	}
}

func read(t *testing.T, n *Node, study, sop string) []byte {
	t.Helper()
	rc, err := n.Archive.ReadInstance(context.Background(), study, sop)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
