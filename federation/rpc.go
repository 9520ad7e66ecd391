package federation

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Request-response protocols between members: one request and one answer
// per stream, each a length-prefixed frame with a hard limit checked before
// anything is allocated.
const (
	// ApplyProtocol forwards a signed registry command to the leader.
	ApplyProtocol protocol.ID = "/dicomesh/registry/apply/1.0.0"
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
		st.SetDeadline(time.Now().Add(rpcTimeout))
		req, err := ReadFrame(bufio.NewReader(st), MaxRequest)
		if err != nil {
			st.Reset()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		resp, err := fn(ctx, from, req)
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
		if err := WriteFrame(st, out); err != nil {
			st.Reset()
		}
	})
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
	if err := WriteFrame(st, req); err != nil {
		st.Reset()
		return nil, err
	}
	st.CloseWrite()
	resp, err := ReadFrame(bufio.NewReader(st), MaxResponse)
	if err != nil {
		st.Reset()
		return nil, fmt.Errorf("federation: %s from %s: %w", proto, p, err)
	}
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

// WriteFrame writes b as one frame: a uvarint length, then the bytes.
func WriteFrame(w io.Writer, b []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, len(b)+binary.MaxVarintLen64), uint64(len(b)))
	_, err := w.Write(append(buf, b...))
	return err
}

// ReadFrame reads one frame of at most max bytes; the length is checked
// against max before anything is allocated.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes (limit %d)", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
