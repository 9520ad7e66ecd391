package federation

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Members is the set of facilities admitted to the federation, as the
// node's registry replica says, plus the peers this node itself dials to
// join and a time-bounded window in which unknown peers may connect to
// present an invitation. It is safe for concurrent use.
type Members struct {
	mu      sync.RWMutex
	members map[peer.ID]bool
	dialed  map[peer.ID]bool
	until   time.Time // join window
	now     func() time.Time
}

// NewMembers returns an empty set; now is the clock (nil: time.Now).
func NewMembers(now func() time.Time) *Members {
	if now == nil {
		now = time.Now
	}
	return &Members{members: map[peer.ID]bool{}, dialed: map[peer.ID]bool{}, now: now}
}

// Set replaces the admitted members.
func (m *Members) Set(ids []peer.ID) {
	s := make(map[peer.ID]bool, len(ids))
	for _, id := range ids {
		s[id] = true
	}
	m.mu.Lock()
	m.members = s
	m.mu.Unlock()
}

// Has reports whether id is an admitted member.
func (m *Members) Has(id peer.ID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.members[id]
}

// List returns the admitted members.
func (m *Members) List() []peer.ID {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]peer.ID, 0, len(m.members))
	for id := range m.members {
		out = append(out, id)
	}
	return out
}

// Dialing records that this node dials id on purpose (to join through it):
// the connection is allowed although id is not a member yet here.
func (m *Members) Dialing(id peer.ID) {
	m.mu.Lock()
	m.dialed[id] = true
	m.mu.Unlock()
}

// AllowJoin opens, until t, a window in which peers that are not members
// may connect, to open the join protocol and nothing else. Each invitation
// the node issues extends it to the invitation's expiry.
func (m *Members) AllowJoin(t time.Time) {
	m.mu.Lock()
	if t.After(m.until) {
		m.until = t
	}
	m.mu.Unlock()
}

// joinOpen reports whether the join window is open.
func (m *Members) joinOpen() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.now().Before(m.until)
}

func (m *Members) admits(id peer.ID) bool {
	m.mu.RLock()
	ok := m.members[id] || m.dialed[id]
	m.mu.RUnlock()
	return ok || m.joinOpen()
}

// Gater refuses connections from peers that are neither members, nor peers
// this node dials to join, nor (while a join window is open) newcomers.
// Protocol handlers check membership again before reading a byte.
type Gater struct{ M *Members }

var _ connmgr.ConnectionGater = Gater{}

func (g Gater) InterceptPeerDial(peer.ID) bool               { return true }
func (g Gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g Gater) InterceptAccept(network.ConnMultiaddrs) bool  { return true }

// InterceptSecured decides once the remote peer is authenticated (Noise).
func (g Gater) InterceptSecured(dir network.Direction, id peer.ID, _ network.ConnMultiaddrs) bool {
	if dir == network.DirOutbound {
		return true
	}
	return g.M.admits(id)
}

func (g Gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
