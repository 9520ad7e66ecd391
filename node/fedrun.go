package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation"
	"github.com/dicomesh/dicomesh/federation/access"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

// fedRuntime is the federation side of a running node: its registry
// replica, Raft, membership and protocols.
type fedRuntime struct {
	n       *Node
	h       host.Host
	members *federation.Members
	fsm     *registry.FSM
	r       *raft.Raft
	stores  *raftStores
	sl      *federation.StreamLayer

	mu      sync.Mutex
	fs      *fedState
	secrets *registry.Secrets
	studies map[string]string // manifest id -> study UID, this facility's
	wake    chan struct{}
	dialing sync.Map // peer.ID -> true while a dial is in flight
	apply   *federation.Client
	fwd     chan forwardReq // commands to forward to the leader
}

// runtime returns the federation runtime of a running node, or nil.
func (n *Node) runtime() *fedRuntime {
	n.rtMu.Lock()
	defer n.rtMu.Unlock()
	return n.rt
}

// addrs are the full multiaddrs the node listens on.
func (rt *fedRuntime) addrs() []string {
	var out []string
	for _, a := range rt.h.Addrs() {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}

// startFederation starts the registry replica on h, whose gater admits
// members, and the loop that keeps it current until ctx ends. The node
// must have created or joined a federation.
func (n *Node) startFederation(ctx context.Context, h host.Host, members *federation.Members, fs *fedState) (*fedRuntime, error) {
	// Until the replica has caught up, the members are those known at
	// joining.
	known := fs.Bootstrap
	if cached, err := n.cachedMembers(); err == nil {
		// The members of the last run, with their addresses: a restarted
		// member reaches the others before its replica has caught up.
		for _, m := range cached {
			if m.Status == registry.Active.String() {
				known = append(known, peerInfo{ID: m.PeerID, Addrs: m.Addrs})
			}
		}
	}
	ids := []peer.ID{}
	for _, b := range known {
		if id, err := peer.Decode(b.ID); err == nil {
			ids = append(ids, id)
		}
	}
	members.Set(ids)
	members.AllowJoin(fs.JoinUntil)
	stores, err := openRaftStores(n.raftDir(), n.hclog())
	if err != nil {
		return nil, err
	}
	rt := &fedRuntime{n: n, h: h, members: members, fsm: registry.New(), stores: stores, fs: fs, wake: make(chan struct{}, 1),
		apply: federation.NewClient(h, federation.ApplyProtocol), fwd: make(chan forwardReq)}
	for _, b := range known {
		rt.addPeer(b.ID, b.Addrs)
	}
	rt.sl = federation.NewStreamLayer(h, members)
	trans := raft.NewNetworkTransport(rt.sl, 3, 10*time.Second, io.Discard)
	r, err := raft.NewRaft(raftConfig(n.FacilityID, n.hclog()), rt.fsm, stores.wal, stores.wal, stores.snaps, trans)
	if err != nil {
		stores.Close()
		return nil, fmt.Errorf("start the registry: %w", err)
	}
	rt.r = r
	federation.Serve(h, federation.ApplyProtocol, members, false, rt.serveApply)
	federation.Serve(h, federation.JoinProtocol, members, true, rt.serveJoin)
	blocks.Serve(h, n.Archive.Blockstore(), members.Has)
	cc := access.DefaultCheckConfig()
	cc.Federation, cc.Self = fs.ID, n.FacilityID
	cc.Member = rt.active
	checker, err := access.NewChecker(cc)
	if err != nil {
		return nil, err
	}
	access.Serve(h, n.Identity, checker, &owner{n: n, dir: rt, policy: consent.DefaultPolicy(), grantTTL: time.Hour, now: time.Now})
	n.rtMu.Lock()
	n.rt = rt
	n.rtMu.Unlock()
	go rt.loop(ctx)
	go rt.forwardLoop(ctx)
	return rt, nil
}

// registryReady is the readiness check of the registry: ready when the
// node is in no federation, or its replica has a leader.
func (n *Node) registryReady() error {
	rt := n.runtime()
	if rt == nil {
		return nil
	}
	if addr, _ := rt.r.LeaderWithID(); addr == "" {
		return errors.New("no registry leader reachable")
	}
	return nil
}

// stop shuts Raft down and closes the stores.
func (rt *fedRuntime) stop() {
	rt.n.rtMu.Lock()
	rt.n.rt = nil
	rt.n.rtMu.Unlock()
	rt.r.Shutdown().Error()
	rt.apply.Close()
	rt.sl.Close()
	rt.stores.Close()
}

func (rt *fedRuntime) addPeer(id string, addrs []string) {
	pid, err := peer.Decode(id)
	if err != nil || pid == rt.h.ID() {
		return
	}
	for _, a := range addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			rt.h.Peerstore().AddAddr(pid, m, peerstore.PermanentAddrTTL)
		}
	}
}

// active reports whether a facility is an active member.
func (rt *fedRuntime) active(id string) bool {
	f, ok := rt.fsm.Facility(id)
	return ok && f.Status == registry.Active
}

// loop keeps the node's view of the federation current until ctx ends:
// membership and peer addresses from the replica, the founding command,
// the Raft configuration (on the leader), the node's own addresses, and
// the outbox.
func (rt *fedRuntime) loop(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	published := false
	var anchored time.Time
	for {
		rt.sync(ctx)
		if !published && rt.publishAddrs(ctx) {
			published = true
		}
		rt.drain(ctx)
		if time.Since(anchored) > 5*time.Second {
			rt.anchor(ctx)
			anchored = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-rt.wake:
		}
	}
}

func (rt *fedRuntime) sync(ctx context.Context) {
	facs := rt.fsm.Facilities()
	if len(facs) > 0 {
		var ids []peer.ID
		for _, f := range facs {
			if f.Status != registry.Active {
				continue
			}
			rt.addPeer(f.ID, f.Addrs)
			if id, err := peer.Decode(f.ID); err == nil {
				ids = append(ids, id)
			}
		}
		rt.members.Set(ids)
		rt.writeMembersCache(facs)
		rt.dialMembers(ctx, ids)
	} else {
		rt.dialMembers(ctx, rt.members.List())
	}
	if rt.r.State() != raft.Leader {
		return
	}
	rt.mu.Lock()
	genesis := rt.fs.Genesis
	rt.mu.Unlock()
	if len(genesis) > 0 {
		if fed, _ := rt.fsm.Federation(); fed == "" {
			f := rt.r.Apply(genesis, 10*time.Second)
			if err := f.Error(); err != nil {
				return
			}
			if res := f.Response().(registry.Result); res.Code != registry.OK {
				rt.n.log.Error("the federation's founding command was refused", "code", res.Code.String(), "reason", res.Reason)
				return
			}
		}
		rt.mu.Lock()
		rt.fs.Genesis = nil
		fs := *rt.fs
		rt.mu.Unlock()
		rt.n.saveFed(&fs)
	}
	rt.reconcile(facs)
}

// reconcile makes the Raft configuration follow the registry: active
// voters vote, active non-voters replicate, the others are removed.
func (rt *fedRuntime) reconcile(facs []registry.Facility) {
	if len(facs) == 0 {
		return
	}
	cf := rt.r.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	have := map[string]raft.ServerSuffrage{}
	for _, s := range cf.Configuration().Servers {
		have[string(s.ID)] = s.Suffrage
	}
	for _, f := range facs {
		id, addr := raft.ServerID(f.ID), raft.ServerAddress(f.ID)
		cur, in := have[f.ID]
		switch {
		case f.Status != registry.Active && in && f.ID != rt.n.FacilityID:
			rt.r.RemoveServer(id, 0, 5*time.Second).Error()
		case f.Status != registry.Active:
		case !in:
			// Every member starts replicating as a non-voter, so that a
			// newcomer that is not up yet cannot cost the quorum.
			rt.r.AddNonvoter(id, addr, 0, 5*time.Second).Error()
		case f.Role == registry.Voter && cur != raft.Voter && rt.connected(f.ID):
			// A voter votes once it is reachable.
			rt.r.AddVoter(id, addr, 0, 5*time.Second).Error()
		case f.Role == registry.Nonvoter && cur == raft.Voter:
			rt.r.DemoteVoter(id, 0, 5*time.Second).Error()
		}
	}
}

// connected reports whether this node has a live connection to facility.
func (rt *fedRuntime) connected(facility string) bool {
	pid, err := peer.Decode(facility)
	return err == nil && len(rt.h.Network().ConnsToPeer(pid)) > 0
}

// dialMembers connects to members this node has no connection to, in the
// background: a member learns the others' current addresses from these
// connections as well as from the registry.
func (rt *fedRuntime) dialMembers(ctx context.Context, ids []peer.ID) {
	for _, id := range ids {
		if id == rt.h.ID() || len(rt.h.Network().ConnsToPeer(id)) > 0 {
			continue
		}
		if _, busy := rt.dialing.LoadOrStore(id, true); busy {
			continue // one dial at a time per member
		}
		go func() {
			defer rt.dialing.Delete(id)
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			rt.h.Connect(cctx, peer.AddrInfo{ID: id})
		}()
	}
}

// federationID is the id of the federation this member belongs to, known
// from federation.json (founding or joining wrote it) before the replica
// has caught up.
func (rt *fedRuntime) federationID() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.fs.ID
}

// publishAddrs updates this facility's addresses in the registry when they
// differ from where it listens. It reports whether they are current.
func (rt *fedRuntime) publishAddrs(ctx context.Context) bool {
	f, ok := rt.fsm.Facility(rt.n.FacilityID)
	if !ok {
		return false
	}
	addrs := rt.addrs()
	if slices.Equal(f.Addrs, addrs) {
		return true
	}
	cmd, err := registry.Sign(rt.n.Identity, rt.federationID(), registry.KindUpdateFacility, &registry.UpdateFacility{Addrs: addrs}, time.Now(), randReader)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := rt.submit(ctx, cmd)
	return err == nil && res.Code == registry.OK
}

// ErrNoQuorum is returned by submit when no leader could take the command.
var ErrNoQuorum = errors.New("node: the registry has no reachable leader")

// submit applies a signed command through the leader: locally when this
// node leads, else forwarded. It retries while leadership moves, until ctx
// ends.
func (rt *fedRuntime) submit(ctx context.Context, cmd registry.Signed) (registry.Result, error) {
	for {
		if rt.r.State() == raft.Leader {
			f := rt.r.Apply(cmd, 10*time.Second)
			if err := f.Error(); err == nil {
				return f.Response().(registry.Result), nil
			}
		} else if _, lid := rt.r.LeaderWithID(); lid != "" {
			if pid, err := peer.Decode(string(lid)); err == nil {
				if res, err := rt.forward(ctx, pid, cmd); err == nil {
					return res, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return registry.Result{}, fmt.Errorf("%w: %v", ErrNoQuorum, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// mySecrets opens the federation secrets sealed to this facility.
func (rt *fedRuntime) mySecrets() (registry.Secrets, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.secrets != nil {
		return *rt.secrets, nil
	}
	f, ok := rt.fsm.Facility(rt.n.FacilityID)
	if !ok {
		return registry.Secrets{}, errors.New("node: this facility is not in the registry replica yet")
	}
	s, err := registry.OpenSecrets(rt.n.Identity.AgeIdentity(), f.Secrets)
	if err != nil {
		return registry.Secrets{}, err
	}
	// Key use: the facility's recipient key opened the federation's
	// directory and linkage keys.
	if _, err := rt.n.Audit.Append(context.Background(), audit.Record{Event: audit.EventSecurityAlert, Action: audit.ActionExecute,
		Outcome: audit.Success, User: "dicomesh", Facility: rt.n.FacilityID, Query: "key use: federation directory and linkage keys opened"}); err != nil {
		return registry.Secrets{}, err
	}
	rt.secrets = &s
	return s, nil
}

// serveJoin admits a newcomer that presents a valid invitation.
func (rt *fedRuntime) serveJoin(ctx context.Context, from peer.ID, body []byte) ([]byte, error) {
	var req joinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &federation.RemoteError{Code: "malformed", Message: "not a join request"}
	}
	refuse := func(code, msg string) ([]byte, error) {
		rt.n.Audit.Append(ctx, audit.Record{Event: audit.EventNetworkEntry, Action: audit.ActionCreate, Outcome: audit.Denied,
			OutcomeDesc: msg, Peer: from.String(), User: "join", Query: "join refused"})
		return nil, &federation.RemoteError{Code: code, Message: msg}
	}
	if req.Facility.ID != from.String() {
		return refuse("impostor", "the facility joining is not the peer that asks")
	}
	// A founder that just started may not have applied the founding
	// command yet.
	sec, err := rt.mySecrets()
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		sec, err = rt.mySecrets()
	}
	if err != nil {
		return refuse("unavailable", err.Error())
	}
	rec := req.Facility
	if rec.Secrets, err = registry.SealSecrets(rec.Recipient, sec); err != nil {
		return refuse("malformed", "recipient: "+err.Error())
	}
	fed, name := rt.fsm.Federation()
	cmd, err := registry.Sign(rt.n.Identity, fed, registry.KindAdmitFacility, &registry.AdmitFacility{Invitation: req.Invitation, Facility: rec, Proof: req.Proof}, time.Now(), randReader)
	if err != nil {
		return refuse("malformed", err.Error())
	}
	res, err := rt.submit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if res.Code != registry.OK {
		return refuse(res.Code.String(), res.Reason)
	}
	rt.n.Audit.Append(ctx, audit.Record{Event: audit.EventNetworkEntry, Action: audit.ActionCreate, Outcome: audit.Success,
		Peer: from.String(), User: "join", Query: "admitted facility " + rec.Name})
	// Answer with the members as this replica knows them once it has
	// applied the admission.
	deadline := time.Now().Add(10 * time.Second)
	for !rt.active(rec.ID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	resp := joinResponse{Federation: fed, Name: name}
	for _, f := range rt.fsm.Facilities() {
		if f.Status == registry.Active {
			addrs := f.Addrs
			if f.ID == rt.n.FacilityID {
				addrs = rt.addrs()
			}
			resp.Members = append(resp.Members, peerInfo{ID: f.ID, Addrs: addrs})
		}
	}
	rt.nudge()
	return json.Marshal(resp)
}

func (rt *fedRuntime) nudge() {
	select {
	case rt.wake <- struct{}{}:
	default:
	}
}

// Directory, for the owner's side of the exchange.

var _ Directory = (*fedRuntime)(nil)

func (rt *fedRuntime) Recipient(facility string) (age.Recipient, error) {
	f, ok := rt.fsm.Facility(facility)
	if !ok || f.Status != registry.Active {
		return nil, fmt.Errorf("facility %s is not an active member", facility)
	}
	return age.ParseX25519Recipient(f.Recipient)
}

func (rt *fedRuntime) Directives(patient string) []consent.Directive {
	sec, err := rt.mySecrets()
	if err != nil {
		return nil
	}
	issuer, id, _ := cutPatient(patient)
	var out []consent.Directive
	for _, t := range crypto.PatientTokens(sec.Linkage, crypto.Patient{Issuer: issuer, ID: id}) {
		out = append(out, rt.fsm.Directives(t.String())...)
	}
	return out
}

func (rt *fedRuntime) Study(manifest string) (string, error) {
	rt.mu.Lock()
	uid, ok := rt.studies[manifest]
	rt.mu.Unlock()
	if ok {
		return uid, nil
	}
	all, err := rt.n.Archive.Studies(archiveAll)
	if err != nil {
		return "", err
	}
	m := map[string]string{}
	for _, st := range all {
		if st.Source == "" {
			m[rt.n.manifestID(st.UID)] = st.UID
		}
	}
	rt.mu.Lock()
	rt.studies = m
	rt.mu.Unlock()
	if uid, ok := m[manifest]; ok {
		return uid, nil
	}
	return "", fmt.Errorf("manifest %s is not this facility's", manifest)
}

// Submit applies a signed registry command through the leader (forwarded
// when this member does not lead) and returns the registry's result. It
// waits while leadership moves, until ctx ends.
func (n *Node) Submit(ctx context.Context, cmd registry.Signed) (registry.Result, error) {
	rt := n.runtime()
	if rt == nil {
		return registry.Result{}, ErrNotRunning
	}
	return rt.submit(ctx, cmd)
}

// Registry returns the running member's registry replica, or nil.
func (n *Node) Registry() *registry.FSM {
	if rt := n.runtime(); rt != nil {
		return rt.fsm
	}
	return nil
}
