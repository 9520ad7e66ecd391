package federation

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/dicomesh/dicomesh/federation/frame"
)

// Request-response protocols between members: one request and one answer
// per stream, each a length-prefixed frame with a hard limit checked before
// anything is allocated.
const (
	// ApplyProtocol forwards a batch of signed registry commands to the
	// leader.
	ApplyProtocol protocol.ID = "/dicomesh/registry/apply/2.0.0"
	// ReadProtocol asks the leader for a linearizable read.
	ReadProtocol protocol.ID = "/dicomesh/registry/read/1.0.0"
	// JoinProtocol is how a newcomer presents its invitation: the only
	// protocol a peer that is not a member may open, and only while a join
	// window is open.
	JoinProtocol protocol.ID = "/dicomesh/join/1.0.0"
)

// Limits of one exchange.
const (
	MaxRequest  = 1 << 20
	MaxResponse = 1 << 20
	rpcTimeout  = 30 * time.Second
)

// RemoteError is a failure the serving member reports. Leader, when set,
// names the member to retry with (the handler was not the leader).
type RemoteError struct {
	Code    string
	Message string
	Leader  string
}

func (e *RemoteError) Error() string {
	s := "federation: remote " + e.Code + ": " + e.Message
	if e.Leader != "" {
		s += " (leader " + e.Leader + ")"
	}
	return s
}

// Handler answers one request. Returning a *RemoteError sends it as it is;
// any other error is sent with code "failed".
type Handler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// Serve registers a request-response protocol on h. Unless open is set,
// only members may use it; with open, newcomers may too while m's join
// window is open.
func Serve(h host.Host, p protocol.ID, m *Members, open bool, fn Handler) {
	h.SetStreamHandler(p, func(st network.Stream) {
		defer st.Close()
		from := st.Conn().RemotePeer()
		if !m.Has(from) && !(open && m.joinOpen()) {
			st.Reset()
			return
		}
		if err := st.Scope().ReserveMemory(MaxRequest, network.ReservationPriorityHigh); err != nil {
			st.Reset()
			return
		}
		defer st.Scope().ReleaseMemory(MaxRequest)
		r := bufio.NewReader(st)
		// A stream carries requests one after the other until the caller
		// closes it (Client keeps streams open; Call sends one).
		for {
			st.SetDeadline(time.Now().Add(rpcTimeout))
			req, err := frame.Read(r, MaxRequest)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				st.Reset()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
			resp, err := fn(ctx, from, req)
			cancel()
			var out []byte
			if err != nil {
				var re *RemoteError
				if !errors.As(err, &re) {
					re = &RemoteError{Code: "failed", Message: err.Error()}
				}
				out = append([]byte{1}, encodeError(re)...)
			} else {
				out = append([]byte{0}, resp...)
			}
			if len(out) > MaxResponse {
				st.Reset()
				return
			}
			if err := frame.Write(st, out); err != nil {
				st.Reset()
				return
			}
		}
	})
}

// Client calls one protocol on other members over streams it keeps open
// between calls, so that a busy caller does not pay a stream negotiation
// per request. It is safe for concurrent use.
type Client struct {
	h     host.Host
	proto protocol.ID

	mu   sync.Mutex
	idle map[peer.ID][]*clientStream
}

type clientStream struct {
	st network.Stream
	r  *bufio.Reader
}

// maxIdle bounds the streams kept open to one peer.
const maxIdle = 64

// NewClient returns a client of protocol proto on h.
func NewClient(h host.Host, proto protocol.ID) *Client {
	return &Client{h: h, proto: proto, idle: map[peer.ID][]*clientStream{}}
}

// Call sends one request to p and returns the answer or the *RemoteError
// p reported. A kept stream that turns out to be dead is replaced once.
func (c *Client) Call(ctx context.Context, p peer.ID, req []byte) ([]byte, error) {
	if len(req) > MaxRequest {
		return nil, fmt.Errorf("federation: request of %d bytes (limit %d)", len(req), MaxRequest)
	}
	for attempt := 0; ; attempt++ {
		cs, reused, err := c.get(ctx, p)
		if err != nil {
			return nil, err
		}
		dl := time.Now().Add(rpcTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		cs.st.SetDeadline(dl)
		var resp []byte
		if err = frame.Write(cs.st, req); err == nil {
			resp, err = frame.Read(cs.r, MaxResponse)
		}
		if err != nil {
			cs.st.Reset()
			if reused && attempt == 0 && ctx.Err() == nil {
				continue // the peer may have closed an idle stream
			}
			return nil, fmt.Errorf("federation: %s from %s: %w", c.proto, p, err)
		}
		c.put(p, cs)
		return decodeAnswer(p, resp)
	}
}

func (c *Client) get(ctx context.Context, p peer.ID) (*clientStream, bool, error) {
	c.mu.Lock()
	if l := c.idle[p]; len(l) > 0 {
		cs := l[len(l)-1]
		c.idle[p] = l[:len(l)-1]
		c.mu.Unlock()
		return cs, true, nil
	}
	c.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	st, err := c.h.NewStream(octx, p, c.proto)
	if err != nil {
		return nil, false, err
	}
	return &clientStream{st: st, r: bufio.NewReader(st)}, false, nil
}

func (c *Client) put(p peer.ID, cs *clientStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle[p]) >= maxIdle {
		cs.st.Close()
		return
	}
	c.idle[p] = append(c.idle[p], cs)
}

// Close closes the kept streams.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, l := range c.idle {
		for _, cs := range l {
			cs.st.Close()
		}
		delete(c.idle, p)
	}
}

func decodeAnswer(p peer.ID, resp []byte) ([]byte, error) {
	if len(resp) == 0 {
		return nil, fmt.Errorf("federation: empty answer from %s", p)
	}
	if resp[0] == 1 {
		re, err := decodeError(resp[1:])
		if err != nil {
			return nil, err
		}
		return nil, re
	}
	return resp[1:], nil
}

// Call sends one request to peer p on protocol proto and returns the answer
// or the *RemoteError the peer reported.
func Call(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
	if len(req) > MaxRequest {
		return nil, fmt.Errorf("federation: request of %d bytes (limit %d)", len(req), MaxRequest)
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	st, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	if err := frame.Write(st, req); err != nil {
		st.Reset()
		return nil, err
	}
	st.CloseWrite()
	resp, err := frame.Read(bufio.NewReader(st), MaxResponse)
	if err != nil {
		st.Reset()
		return nil, fmt.Errorf("federation: %s from %s: %w", proto, p, err)
	}
	return decodeAnswer(p, resp)
}

func encodeError(e *RemoteError) []byte {
	var b []byte
	for _, s := range []string{e.Code, e.Message, e.Leader} {
		if len(s) > 4096 {
			s = s[:4096]
		}
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeError(b []byte) (*RemoteError, error) {
	var f [3]string
	for i := range f {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("federation: malformed error answer")
		}
		f[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	return &RemoteError{Code: f[0], Message: f[1], Leader: f[2]}, nil
}
