package access

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
	"github.com/dicomesh/dicomesh/federation/frame"
)

// ID is the access protocol: one signed request, one signed response.
const ID protocol.ID = "/dicomesh/access/1.0.0"

// Frame limits: a request is small; a response carries up to MaxManifests
// sealed keys.
const (
	maxRequestFrame  = 64 << 10
	maxResponseFrame = 512 << 10
	streamTimeout    = 30 * time.Second
)

// Handler is the owner's side of the protocol, implemented by the node.
type Handler interface {
	// Decide answers a request that passed every check: it evaluates
	// consent, writes the owner's audit record first and returns the
	// response to sign. An error denies the request (fail closed) with a
	// reason that names no patient data.
	Decide(ctx context.Context, req Request, env crypto.Envelope) (Response, error)
	// Refused is told of every request that failed a check, so that the
	// owner can audit it. It must not block for long.
	Refused(ctx context.Context, from peer.ID, err *RefusedError)
}

// Server answers access requests on a host.
type Server struct {
	h       host.Host
	id      *crypto.Identity
	checker *Checker
	handler Handler
	now     func() time.Time
}

// Serve registers the access protocol on h. Requests are checked by c and
// decided by hd; responses are signed with id.
func Serve(h host.Host, id *crypto.Identity, c *Checker, hd Handler) *Server {
	s := &Server{h: h, id: id, checker: c, handler: hd, now: c.cfg.Now}
	h.SetStreamHandler(ID, s.handle)
	return s
}

// Close unregisters the protocol.
func (s *Server) Close() { s.h.RemoveStreamHandler(ID) }

func (s *Server) handle(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	if !s.checker.cfg.Member(from.String()) {
		// Not a member: nothing is read, nothing is said. The refusal is
		// recorded before the stream is reset.
		s.handler.Refused(context.Background(), from, &RefusedError{Code: CodeNotMember, Reason: "stream from a peer that is not a member"})
		st.Reset()
		return
	}
	if err := st.Scope().ReserveMemory(maxRequestFrame+maxResponseFrame, network.ReservationPriorityAlways); err != nil {
		st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(maxRequestFrame + maxResponseFrame)
	st.SetDeadline(time.Now().Add(streamTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()

	var env crypto.Envelope
	body, err := frame.Read(bufio.NewReader(st), maxRequestFrame)
	if err == nil {
		err = canon.Unmarshal(body, &env)
	}
	if err != nil {
		s.handler.Refused(ctx, from, &RefusedError{Code: CodeMalformed, Reason: err.Error()})
		st.Reset()
		return
	}
	req, err := s.checker.Check(env, from)
	var resp Response
	if err != nil {
		var re *RefusedError
		if !errors.As(err, &re) {
			re = &RefusedError{Code: CodeMalformed, Reason: err.Error()}
		}
		s.handler.Refused(ctx, from, re)
		if re.Code == CodeBadSignature || re.Code == CodeImpostor {
			st.Reset() // no signed answer to an unauthenticated request
			return
		}
		resp = Response{Decision: Denied, Reason: "refused: " + re.Code + ": " + re.Reason}
	} else if resp, err = s.handler.Decide(ctx, req, env); err != nil {
		resp = Response{Decision: Denied, Reason: "the owner could not decide: " + err.Error()}
	}
	resp.Request = RequestHash(env)
	if resp.Time == 0 {
		resp.Time = millis(s.now())
	}
	if len(resp.Reason) > MaxFieldBytes {
		resp.Reason = resp.Reason[:MaxFieldBytes]
	}
	signed, err := SignResponse(s.id, &resp)
	if err != nil {
		st.Reset()
		return
	}
	if err := frame.Write(st, canon.Marshal(signed)); err != nil {
		st.Reset()
	}
}

// Ask sends req, signed with id, to its owner over h and returns the owner's
// verified response. It fills in the requester, a fresh nonce and the time
// when they are empty. A denial is a Response with Decision Denied, not an
// error; errors are transport failures and responses that do not verify.
func Ask(ctx context.Context, h host.Host, id *crypto.Identity, owner peer.ID, req Request, now time.Time) (Response, error) {
	if req.Requester == "" {
		req.Requester = h.ID().String()
	}
	if req.Owner == "" {
		req.Owner = owner.String()
	}
	if len(req.Nonce) == 0 {
		req.Nonce = make([]byte, 16)
		rand.Read(req.Nonce)
	}
	if req.Time == 0 {
		req.Time = millis(now)
	}
	env, err := SignRequest(id, &req)
	if err != nil {
		return Response{}, err
	}
	return Send(ctx, h, owner, env, now)
}

// Send sends a signed request envelope as it is (Ask signs one) and verifies
// the response.
func Send(ctx context.Context, h host.Host, owner peer.ID, env crypto.Envelope, now time.Time) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	st, err := h.NewStream(ctx, owner, ID)
	if err != nil {
		return Response{}, fmt.Errorf("access: open stream to %s: %w", owner, err)
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	if err := frame.Write(st, canon.Marshal(env)); err != nil {
		st.Reset()
		return Response{}, fmt.Errorf("access: send to %s: %w", owner, err)
	}
	st.CloseWrite()
	body, err := frame.Read(bufio.NewReader(st), maxResponseFrame)
	if err != nil {
		st.Reset()
		return Response{}, fmt.Errorf("access: answer from %s: %w", owner, err)
	}
	var signed crypto.Envelope
	if err := canon.Unmarshal(body, &signed); err != nil {
		return Response{}, fmt.Errorf("access: answer from %s: %w", owner, err)
	}
	return VerifyResponse(signed, owner, env, now)
}

// peerOf returns the peer id of an Ed25519 facility key.
func peerOf(pub ed25519.PublicKey) (peer.ID, error) {
	k, err := p2pcrypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(k)
}
