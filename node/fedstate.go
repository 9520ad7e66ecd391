package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dicomesh/dicomesh/crypto/canon"
	"github.com/dicomesh/dicomesh/federation"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

// fedFile is written into the home once the node founded or joined a
// federation.
const fedFile = "federation.json"

// ErrNoFederation is returned by federation operations on a node that has
// neither created nor joined one.
var ErrNoFederation = errors.New("node: not a member of a federation (dicomesh federation create or join)")

// fedState is what the home remembers of the federation besides the Raft
// stores: its id and name, the members known at joining (to reach the
// others before the replica has caught up), the founding command until it
// is applied, and how long invitations keep the join window open.
type fedState struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Bootstrap []peerInfo `json:"bootstrap,omitempty"`
	Genesis   []byte     `json:"genesis,omitempty"`
	JoinUntil time.Time  `json:"join_until,omitzero"`
}

type peerInfo struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

func (n *Node) loadFed() (*fedState, error) {
	b, err := os.ReadFile(n.Home.Path(fedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoFederation
	}
	if err != nil {
		return nil, err
	}
	var s fedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", fedFile, err)
	}
	return &s, nil
}

func (n *Node) saveFed(s *fedState) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return writeFileAtomic(n.Home.Path(fedFile), append(b, '\n'), 0o600)
}

func (n *Node) raftDir() string { return n.Home.Path("raft") }

// facilityRecord is this facility as the registry describes it, its
// secrets sealed to itself.
func (n *Node) facilityRecord(sec registry.Secrets, addrs []string) (registry.Facility, error) {
	sealed, err := registry.SealSecrets(n.Identity.Recipient().String(), sec)
	if err != nil {
		return registry.Facility{}, err
	}
	return registry.Facility{ID: n.FacilityID, Name: n.Config.Facility, SignKey: n.Identity.SignKey(),
		Recipient: n.Identity.Recipient().String(), Addrs: addrs, Secrets: sealed}, nil
}

// CreateFederation founds a federation with this facility as its first
// member: new federation secrets (directory and linkage keys), a one-voter
// Raft configuration in the node's stores, and the signed founding command,
// which the node applies when it next runs. The node must not be running.
func (n *Node) CreateFederation(ctx context.Context, name string) (string, error) {
	if _, err := n.loadFed(); err == nil {
		return "", errors.New("node: this facility is already a member of a federation")
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	fed := "fed-" + hex.EncodeToString(idb)
	sec, err := registry.GenerateSecrets(rand.Reader)
	if err != nil {
		return "", err
	}
	rec, err := n.facilityRecord(sec, n.Config.P2P)
	if err != nil {
		return "", err
	}
	genesis, err := registry.Sign(n.Identity, fed, registry.KindCreateFederation, &registry.CreateFederation{Name: name, Founder: rec}, time.Now(), rand.Reader)
	if err != nil {
		return "", err
	}
	stores, err := openRaftStores(n.raftDir(), hclog.NewNullLogger())
	if err != nil {
		return "", err
	}
	defer stores.Close()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(n.FacilityID))
	conf := raftConfig(n.FacilityID, hclog.NewNullLogger())
	err = raft.BootstrapCluster(conf, stores.wal, stores.wal, stores.snaps, trans, raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: raft.ServerID(n.FacilityID), Address: raft.ServerAddress(n.FacilityID)},
	}})
	if err != nil {
		return "", fmt.Errorf("bootstrap the registry: %w", err)
	}
	if err := n.saveFed(&fedState{ID: fed, Name: name, Genesis: genesis}); err != nil {
		return "", err
	}
	n.record(ctx, audit.Record{Event: audit.EventNetworkEntry, Action: audit.ActionCreate, Outcome: audit.Success, Query: "created federation " + name + " (" + fed + ")"})
	return fed, nil
}

// joinRequest is what a newcomer sends on the join protocol.
type joinRequest struct {
	Invitation []byte            `json:"invitation"`
	Facility   registry.Facility `json:"facility"` // Secrets empty: the member seals them
	Proof      []byte            `json:"proof"`
}

// joinResponse is the member's answer once the newcomer is admitted.
type joinResponse struct {
	Federation string     `json:"federation"`
	Name       string     `json:"name"`
	Members    []peerInfo `json:"members"`
}

// Join joins the federation of an invitation token: it dials the inviter,
// presents the invitation with proof that it holds its key, and records the
// federation and its members once admitted. If the node is running, it
// uses the running host; otherwise a temporary one.
func (n *Node) Join(ctx context.Context, token string) (string, error) {
	if _, err := n.loadFed(); err == nil {
		return "", errors.New("node: this facility is already a member of a federation")
	}
	inv, raw, err := registry.ParseInvitation(token)
	if err != nil {
		return "", err
	}
	if time.Now().UnixMilli() > inv.Expires {
		return "", fmt.Errorf("%w: expired at %s", registry.ErrInvitation, time.UnixMilli(inv.Expires).UTC().Format(time.RFC3339))
	}
	inviter, err := peer.Decode(inv.Inviter)
	if err != nil {
		return "", fmt.Errorf("%w: inviter %v", registry.ErrInvitation, err)
	}
	rt := n.runtime()
	n.rtMu.Lock()
	run := n.running
	n.rtMu.Unlock()
	var h host.Host
	if run != nil {
		h = run.h
		run.members.Dialing(inviter)
	} else {
		tmp, err := newHost(hostConfig{identity: n.Identity, listen: []string{"/ip4/127.0.0.1/tcp/0"}})
		if err != nil {
			return "", err
		}
		defer tmp.Close()
		h = tmp
	}
	for _, a := range inv.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			h.Peerstore().AddAddr(inviter, m, peerstore.TempAddrTTL)
		}
	}
	proof, err := registry.ProveJoin(n.Identity, inv.ID)
	if err != nil {
		return "", err
	}
	addrs := n.Config.P2P
	if run != nil {
		addrs = nil
		for _, a := range run.h.Addrs() {
			addrs = append(addrs, a.String())
		}
	}
	rec := registry.Facility{ID: n.FacilityID, Name: n.Config.Facility, SignKey: n.Identity.SignKey(), Recipient: n.Identity.Recipient().String(), Addrs: addrs}
	req, _ := json.Marshal(joinRequest{Invitation: raw, Facility: rec, Proof: proof})
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := federation.Call(ctx, h, inviter, federation.JoinProtocol, req)
	if err != nil {
		return "", fmt.Errorf("join through %s: %w", inviter, err)
	}
	var resp joinResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.Federation != inv.Federation {
		return "", fmt.Errorf("join through %s: unexpected answer", inviter)
	}
	fs := &fedState{ID: resp.Federation, Name: resp.Name, Bootstrap: resp.Members}
	if err := n.saveFed(fs); err != nil {
		return "", err
	}
	n.record(ctx, audit.Record{Event: audit.EventNetworkEntry, Action: audit.ActionCreate, Outcome: audit.Success, Peer: inv.Inviter,
		Query: "joined federation " + resp.Name + " (" + resp.Federation + ")"})
	if run != nil && rt == nil {
		// A running node joins: its registry replica starts now.
		if _, err := n.startFederation(run.ctx, run.h, run.members, fs); err != nil {
			return "", err
		}
	}
	return resp.Federation, nil
}

// Invite signs an invitation for one new facility, valid for ttl, and
// opens the join window of the running node (or records it for the next
// run) until it expires.
func (n *Node) Invite(ctx context.Context, name string, ttl time.Duration) (string, error) {
	fs, err := n.loadFed()
	if err != nil {
		return "", err
	}
	addrs := n.Config.P2P
	if rt := n.runtime(); rt != nil {
		addrs = rt.addrs()
	}
	expires := time.Now().Add(ttl)
	tok, err := registry.NewInvitation(n.Identity, fs.ID, addrs, name, expires, rand.Reader)
	if err != nil {
		return "", err
	}
	if rt := n.runtime(); rt != nil {
		rt.members.AllowJoin(expires)
	}
	if expires.After(fs.JoinUntil) {
		fs.JoinUntil = expires
		if err := n.saveFed(fs); err != nil {
			return "", err
		}
	}
	if err := n.record(ctx, audit.Record{Event: audit.EventNetworkEntry, Action: audit.ActionCreate, Outcome: audit.Success,
		Query: fmt.Sprintf("invitation issued for %q, expires %s", name, expires.UTC().Format(time.RFC3339))}); err != nil {
		return "", err
	}
	return tok, nil
}

// OpenIdentityOnly opens a node's identity and configuration without its
// stores, for operations that must work beside a running node (queueing
// registry commands in the outbox).
func OpenIdentityOnly(h Home) (*Node, error) {
	id, err := LoadIdentity(h)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(h)
	if err != nil {
		return nil, err
	}
	pid, err := PeerID(id)
	if err != nil {
		return nil, err
	}
	return &Node{Home: h, Config: cfg, Identity: id, FacilityID: pid.String(), log: slog.New(slog.DiscardHandler)}, nil
}

// Leave queues this facility's departure from the federation.
func (n *Node) Leave(ctx context.Context) error {
	return n.queueCommand(registry.KindLeaveFacility, registry.Empty{})
}

// Suspend queues the suspension of a member facility.
func (n *Node) Suspend(ctx context.Context, facility string) error {
	if _, err := peer.Decode(facility); err != nil {
		return fmt.Errorf("facility %q: %w", facility, err)
	}
	return n.queueCommand(registry.KindSuspendFacility, &registry.FacilityRef{ID: facility})
}

func (n *Node) queueCommand(k registry.Kind, p canon.Marshaler) error {
	fs, err := n.loadFed()
	if err != nil {
		return err
	}
	cmd, err := registry.Sign(n.Identity, fs.ID, k, p, time.Now(), rand.Reader)
	if err != nil {
		return err
	}
	return n.queue(".cmd", cmd)
}
