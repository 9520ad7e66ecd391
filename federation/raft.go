package federation

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// RaftProtocol carries hashicorp/raft's transport between members.
const RaftProtocol protocol.ID = "/dicomesh/raft/1.0.0"

// ErrClosed is returned by a closed StreamLayer.
var ErrClosed = errors.New("federation: stream layer closed")

// StreamLayer is a raft.StreamLayer over libp2p streams: a raft server
// address is a member's peer id, and the peer authentication of Noise is
// raft's. Use it with raft.NewNetworkTransport.
type StreamLayer struct {
	h       host.Host
	members *Members
	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer registers the raft protocol on h. Streams from peers that
// are not members are reset before a byte is read.
func NewStreamLayer(h host.Host, m *Members) *StreamLayer {
	s := &StreamLayer{h: h, members: m, conns: make(chan net.Conn), closed: make(chan struct{})}
	h.SetStreamHandler(RaftProtocol, s.handle)
	return s
}

func (s *StreamLayer) handle(st network.Stream) {
	from := st.Conn().RemotePeer()
	if !s.members.Has(from) {
		st.Reset()
		return
	}
	s.h.ConnManager().Protect(from, "raft")
	select {
	case s.conns <- &streamConn{st}:
	case <-s.closed:
		st.Reset()
	}
}

// Accept waits for the next raft connection from a member.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, ErrClosed
	}
}

// Close stops accepting and unregisters the protocol.
func (s *StreamLayer) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.h.RemoveStreamHandler(RaftProtocol)
	})
	return nil
}

// Addr is this member's raft address: its peer id.
func (s *StreamLayer) Addr() net.Addr { return Addr(s.h.ID()) }

// Dial opens a raft connection to the member whose peer id is address,
// at the addresses the peerstore holds for it.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	id, err := peer.Decode(string(address))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.h.ConnManager().Protect(id, "raft")
	st, err := s.h.NewStream(ctx, id, RaftProtocol)
	if err != nil {
		return nil, err
	}
	return &streamConn{st}, nil
}

// Addr is a peer id as a net.Addr.
type Addr peer.ID

func (a Addr) Network() string { return "libp2p" }
func (a Addr) String() string  { return peer.ID(a).String() }

// streamConn is a libp2p stream as a net.Conn.
type streamConn struct{ network.Stream }

func (c *streamConn) LocalAddr() net.Addr  { return Addr(c.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return Addr(c.Conn().RemotePeer()) }
