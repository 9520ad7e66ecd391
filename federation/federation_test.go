package federation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

type member struct {
	h  host.Host
	m  *Members
	sl *StreamLayer
	r  *raft.Raft
	f  *logFSM
}

// logFSM records the commands applied.
type logFSM struct {
	mu  sync.Mutex
	got [][]byte
}

func (f *logFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, l.Data)
	return len(f.got)
}
func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (f *logFSM) Restore(io.ReadCloser) error         { return nil }
func (f *logFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func newHost(t *testing.T, m *Members) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.ConnectionGater(Gater{m}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newFederation starts n members that know each other, running Raft over
// the stream layer.
func newFederation(t *testing.T, n int) []*member {
	t.Helper()
	var ms []*member
	for range n {
		m := NewMembers(nil)
		ms = append(ms, &member{h: newHost(t, m), m: m})
	}
	var ids []peer.ID
	for _, a := range ms {
		ids = append(ids, a.h.ID())
	}
	var servers []raft.Server
	for _, a := range ms {
		a.m.Set(ids)
		for _, b := range ms {
			if a != b {
				a.h.Peerstore().AddAddrs(b.h.ID(), b.h.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(a.h.ID().String()), Address: raft.ServerAddress(a.h.ID().String())})
	}
	for _, a := range ms {
		a.sl = NewStreamLayer(a.h, a.m)
		trans := raft.NewNetworkTransport(a.sl, 3, 2*time.Second, io.Discard)
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(a.h.ID().String())
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
		c.Logger = hclog.NewNullLogger()
		a.f = &logFSM{}
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(c, a.f, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		a.r = r
		t.Cleanup(func() { r.Shutdown().Error() })
	}
	if err := ms[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	return ms
}

func leaderOf(t *testing.T, ms []*member) *member {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			if m.r != nil && m.r.State() == raft.Leader {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

func waitCount(t *testing.T, ms []*member, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range ms {
		for m.f.count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("member %s applied %d of %d", m.h.ID(), m.f.count(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRaftOverLibp2p: three members elect a leader and replicate over real
// hosts; when the leader's host goes away, the others elect another and go
// on.
func TestRaftOverLibp2p(t *testing.T) {
	ms := newFederation(t, 3)
	l := leaderOf(t, ms)
	for i := range 10 {
		if err := l.r.Apply([]byte(fmt.Sprint("c", i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, ms, 10)
	l.r.Shutdown().Error()
	l.h.Close()
	var rest []*member
	for _, m := range ms {
		if m != l {
			rest = append(rest, m)
		}
	}
	l2 := leaderOf(t, rest)
	if err := l2.r.Apply([]byte("after"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, rest, 11)
}

// TestApplyForwarding: a follower forwards to the leader; a member that is
// not the leader answers with the leader's id; oversized and garbage
// requests are refused without the handler being called.
func TestApplyForwarding(t *testing.T) {
	ms := newFederation(t, 3)
	l := leaderOf(t, ms)
	var calls sync.Map
	for _, m := range ms {
		Serve(m.h, ApplyProtocol, m.m, false, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			calls.Store(string(req), true)
			if m.r.State() != raft.Leader {
				_, id := m.r.LeaderWithID()
				return nil, &RemoteError{Code: "not-leader", Message: "not the leader", Leader: string(id)}
			}
			f := m.r.Apply(req, 5*time.Second)
			if err := f.Error(); err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "%d", f.Response()), nil
		})
	}
	var follower *member
	for _, m := range ms {
		if m != l {
			follower = m
		}
	}
	ctx := context.Background()
	// Asked of a follower: it names the leader.
	_, err := Call(ctx, ms[0].h, follower.h.ID(), ApplyProtocol, []byte("x"))
	if follower == ms[0] {
		_, err = Call(ctx, l.h, follower.h.ID(), ApplyProtocol, []byte("x"))
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "not-leader" || re.Leader != l.h.ID().String() {
		t.Fatalf("asked a follower: %v", err)
	}
	// Retried with the leader, it applies.
	resp, err := Call(ctx, follower.h, l.h.ID(), ApplyProtocol, []byte("cmd"))
	if err != nil || string(resp) != "1" {
		t.Fatalf("forwarded apply: %q %v", resp, err)
	}
	waitCount(t, ms, 1)
	// Too large: refused before sending.
	if _, err := Call(ctx, follower.h, l.h.ID(), ApplyProtocol, make([]byte, MaxRequest+1)); err == nil {
		t.Fatal("an oversized request was sent")
	}
	// A frame that claims more than the limit: the stream is reset unread.
	st, err := follower.h.NewStream(ctx, l.h.ID(), ApplyProtocol)
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	st.CloseWrite()
	if n, _ := st.Read(make([]byte, 1)); n != 0 {
		t.Fatal("answered a garbage frame")
	}
	if ms[0].f.count() != 1 {
		t.Fatal("garbage reached the log")
	}
}

// TestNonMembers: a peer that is not a member gets no connection; with a
// join window open it connects but reaches only the join protocol.
func TestNonMembers(t *testing.T) {
	ms := newFederation(t, 3)
	l := leaderOf(t, ms)
	for _, m := range ms {
		Serve(m.h, ApplyProtocol, m.m, false, func(context.Context, peer.ID, []byte) ([]byte, error) { return []byte("applied"), nil })
		Serve(m.h, JoinProtocol, m.m, true, func(_ context.Context, from peer.ID, req []byte) ([]byte, error) {
			return append([]byte("welcome "), req...), nil
		})
	}
	stranger := newHost(t, NewMembers(nil))
	ctx := context.Background()
	target := peer.AddrInfo{ID: l.h.ID(), Addrs: l.h.Addrs()}
	if err := stranger.Connect(ctx, target); err == nil {
		// The gater refuses after the handshake; the connection must not
		// stay up.
		time.Sleep(100 * time.Millisecond)
		if len(stranger.Network().ConnsToPeer(l.h.ID())) > 0 {
			t.Fatal("a non-member holds a connection")
		}
	}
	if _, err := Call(ctx, stranger, l.h.ID(), ApplyProtocol, []byte("x")); err == nil {
		t.Fatal("a non-member applied a command")
	}
	// A join window opens: the stranger connects and may join, nothing else.
	l.m.AllowJoin(time.Now().Add(time.Minute))
	if err := stranger.Connect(ctx, target); err != nil {
		t.Fatalf("connect in the join window: %v", err)
	}
	resp, err := Call(ctx, stranger, l.h.ID(), JoinProtocol, []byte("token"))
	if err != nil || !bytes.Equal(resp, []byte("welcome token")) {
		t.Fatalf("join: %q %v", resp, err)
	}
	if _, err := Call(ctx, stranger, l.h.ID(), ApplyProtocol, []byte("x")); err == nil {
		t.Fatal("a newcomer applied a command")
	}
	// A raft stream from a newcomer is reset before any exchange.
	if st, err := stranger.NewStream(ctx, l.h.ID(), RaftProtocol); err == nil {
		st.Write([]byte{0})
		if n, _ := st.Read(make([]byte, 1)); n != 0 {
			t.Fatal("a newcomer spoke raft")
		}
		st.Close()
	}
	if err := l.r.Apply([]byte("still fine"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestClientKeepsStreams: a Client answers many calls over one kept
// stream and replaces a stream the other side dropped.
func TestClientKeepsStreams(t *testing.T) {
	ms := newFederation(t, 2)
	srv, cli := ms[0], ms[1]
	Serve(srv.h, ReadProtocol, srv.m, false, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		return append([]byte("echo "), req...), nil
	})
	c := NewClient(cli.h, ReadProtocol)
	defer c.Close()
	ctx := context.Background()
	for i := range 20 {
		out, err := c.Call(ctx, srv.h.ID(), []byte(fmt.Sprint(i)))
		if err != nil || string(out) != fmt.Sprint("echo ", i) {
			t.Fatalf("call %d: %q %v", i, out, err)
		}
	}
	open := 0
	for _, conn := range cli.h.Network().ConnsToPeer(srv.h.ID()) {
		for _, st := range conn.GetStreams() {
			if st.Protocol() == ReadProtocol {
				open++
			}
		}
	}
	if open != 1 {
		t.Fatalf("%d streams open after 20 sequential calls, want the one kept", open)
	}
	// The server drops every connection: the next call still succeeds.
	for _, conn := range srv.h.Network().ConnsToPeer(cli.h.ID()) {
		conn.Close()
	}
	if out, err := c.Call(ctx, srv.h.ID(), []byte("again")); err != nil || string(out) != "echo again" {
		t.Fatalf("after a dropped connection: %q %v", out, err)
	}
}
