package access

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/crypto/canon"
	"github.com/dicomesh/dicomesh/federation/frame"
)

type facility struct {
	id *crypto.Identity
	h  host.Host
}

func newFacility(t *testing.T) facility {
	t.Helper()
	id, err := crypto.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := p2pcrypto.UnmarshalEd25519PrivateKey(id.PrivateSignKey())
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return facility{id, h}
}

func connect(t *testing.T, a, b facility) {
	t.Helper()
	if err := a.h.Connect(context.Background(), peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// owner is a test Handler: it grants everything and records refusals.
type owner struct {
	mu      sync.Mutex
	refused []string
	decided int
	fail    error
}

func (o *owner) Decide(_ context.Context, req Request, _ crypto.Envelope) (Response, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return Response{}, o.fail
	}
	o.decided++
	var gs []Grant
	for _, m := range req.Manifests {
		gs = append(gs, Grant{Manifest: m, Root: "bafyroot", SealedKey: []byte("sealed")})
	}
	return Response{Decision: Granted, Reason: "permitted by policy", Grants: gs, Expires: time.Now().Add(time.Hour).UnixMilli(), AuditIndex: 7}, nil
}

func (o *owner) Refused(_ context.Context, _ peer.ID, err *RefusedError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused = append(o.refused, err.Code)
}

func (o *owner) lastRefusal() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.refused) == 0 {
		return ""
	}
	return o.refused[len(o.refused)-1]
}

type world struct {
	own, req, outsider facility
	o                  *owner
	now                time.Time
}

func newWorld(t *testing.T) *world {
	w := &world{own: newFacility(t), req: newFacility(t), outsider: newFacility(t), o: &owner{}, now: time.Now()}
	members := map[string]bool{w.own.h.ID().String(): true, w.req.h.ID().String(): true}
	cfg := DefaultCheckConfig()
	cfg.Federation, cfg.Self = "fed1", w.own.h.ID().String()
	cfg.Member = func(id string) bool { return members[id] }
	cfg.Now = func() time.Time { return w.now }
	c, err := NewChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	Serve(w.own.h, w.own.id, c, w.o)
	connect(t, w.req, w.own)
	connect(t, w.outsider, w.own)
	return w
}

func (w *world) request() Request {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	return Request{Federation: "fed1", Requester: w.req.h.ID().String(), Owner: w.own.h.ID().String(),
		User: "dr.b", Purpose: "TREAT", Manifests: []string{"m1", "m2"}, Nonce: nonce, Time: w.now.UnixMilli()}
}

func TestGranted(t *testing.T) {
	w := newWorld(t)
	resp, err := Ask(context.Background(), w.req.h, w.req.id, w.own.h.ID(), w.request(), w.now)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Decision != Granted || len(resp.Grants) != 2 || resp.Grants[1].Manifest != "m2" || resp.AuditIndex != 7 {
		t.Fatalf("response %+v", resp)
	}
}

// TestRefusedRequests: each kind of bad request is refused, reported to the
// owner's handler with its code, and never reaches Decide.
func TestRefusedRequests(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	sign := func(id *crypto.Identity, r Request) crypto.Envelope {
		env, err := SignRequest(id, &r)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tests := []struct {
		name string
		from facility
		env  func() crypto.Envelope
		code string
		// reset: no signed answer at all, only an error
		reset bool
	}{
		{"forged", w.req, func() crypto.Envelope {
			env := sign(w.req.id, w.request())
			env.Body[len(env.Body)-1] ^= 1
			return env
		}, CodeBadSignature, true},
		{"impostor", w.req, func() crypto.Envelope {
			r := w.request()
			return sign(w.own.id, r) // signed by someone else than the sender
		}, CodeImpostor, true},
		{"stale", w.req, func() crypto.Envelope {
			r := w.request()
			r.Time = w.now.Add(-10 * time.Minute).UnixMilli()
			return sign(w.req.id, r)
		}, CodeStale, false},
		{"future", w.req, func() crypto.Envelope {
			r := w.request()
			r.Time = w.now.Add(10 * time.Minute).UnixMilli()
			return sign(w.req.id, r)
		}, CodeStale, false},
		{"re-targeted", w.req, func() crypto.Envelope {
			r := w.request()
			r.Owner = w.outsider.h.ID().String()
			return sign(w.req.id, r)
		}, CodeWrongTarget, false},
		{"other federation", w.req, func() crypto.Envelope {
			r := w.request()
			r.Federation = "fed2"
			return sign(w.req.id, r)
		}, CodeWrongTarget, false},
		{"wrong requester", w.req, func() crypto.Envelope {
			r := w.request()
			r.Requester = w.outsider.h.ID().String()
			return sign(w.req.id, r)
		}, CodeMalformed, false},
		{"non-member", w.outsider, func() crypto.Envelope {
			r := w.request()
			r.Requester = w.outsider.h.ID().String()
			return sign(w.outsider.id, r)
		}, CodeNotMember, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := Send(ctx, tt.from.h, w.own.h.ID(), tt.env(), w.now)
			if tt.reset {
				if err == nil {
					t.Fatalf("answered %+v", resp)
				}
			} else if err != nil || resp.Decision != Denied || !strings.Contains(resp.Reason, tt.code) {
				t.Fatalf("response %+v, err %v; want a denial for %s", resp, err, tt.code)
			}
			if got := w.o.lastRefusal(); got != tt.code {
				t.Fatalf("handler told %q, want %q", got, tt.code)
			}
		})
	}
	if w.o.decided != 0 {
		t.Fatalf("Decide called %d times for refused requests", w.o.decided)
	}
}

func TestReplayRefused(t *testing.T) {
	w := newWorld(t)
	r := w.request()
	env, _ := SignRequest(w.req.id, &r)
	if resp, err := Send(context.Background(), w.req.h, w.own.h.ID(), env, w.now); err != nil || resp.Decision != Granted {
		t.Fatalf("first: %+v %v", resp, err)
	}
	resp, err := Send(context.Background(), w.req.h, w.own.h.ID(), env, w.now)
	if err != nil || resp.Decision != Denied || !strings.Contains(resp.Reason, CodeReplayed) {
		t.Fatalf("replay: %+v %v", resp, err)
	}
	// Once the request is out of the window it is stale, not replayed, and
	// the nonce may be forgotten.
	w.now = w.now.Add(5 * time.Minute)
	resp, _ = Send(context.Background(), w.req.h, w.own.h.ID(), env, w.now)
	if resp.Decision != Denied || !strings.Contains(resp.Reason, CodeStale) {
		t.Fatalf("late replay: %+v", resp)
	}
}

// TestDecideFailureDenies: when the owner cannot decide (its audit record
// cannot be written), the answer is a denial.
func TestDecideFailureDenies(t *testing.T) {
	w := newWorld(t)
	w.o.fail = errors.New("audit log unavailable")
	resp, err := Ask(context.Background(), w.req.h, w.req.id, w.own.h.ID(), w.request(), w.now)
	if err != nil || resp.Decision != Denied || len(resp.Grants) != 0 || !strings.Contains(resp.Reason, "audit log unavailable") {
		t.Fatalf("%+v %v", resp, err)
	}
}

func TestOversizedFrameReset(t *testing.T) {
	w := newWorld(t)
	st, err := w.req.h.NewStream(context.Background(), w.own.h.ID(), ID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	frame.Write(st, make([]byte, maxRequestFrame+1))
	st.CloseWrite()
	if _, err := frame.Read(bufio.NewReader(st), maxResponseFrame); err == nil {
		t.Fatal("an oversized request got an answer")
	}
	if got := w.o.lastRefusal(); got != CodeMalformed {
		t.Fatalf("handler told %q", got)
	}
	// The owner still answers.
	if resp, err := Ask(context.Background(), w.req.h, w.req.id, w.own.h.ID(), w.request(), w.now); err != nil || resp.Decision != Granted {
		t.Fatalf("after garbage: %+v %v", resp, err)
	}
}

// TestVerifyResponse: a response is accepted only from the owner, for this
// request, unexpired.
func TestVerifyResponse(t *testing.T) {
	w := newWorld(t)
	r := w.request()
	env, _ := SignRequest(w.req.id, &r)
	r2 := w.request()
	other, _ := SignRequest(w.req.id, &r2)
	good := Response{Request: RequestHash(env), Decision: Granted, Grants: []Grant{{"m1", "bafy", []byte("k")}}, Expires: w.now.Add(time.Minute).UnixMilli()}
	signed, _ := SignResponse(w.own.id, &good)
	if _, err := VerifyResponse(signed, w.own.h.ID(), env, w.now); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyResponse(signed, w.own.h.ID(), other, w.now); err == nil {
		t.Error("accepted as the answer to another request")
	}
	if _, err := VerifyResponse(signed, w.outsider.h.ID(), env, w.now); err == nil {
		t.Error("accepted from a facility other than the owner")
	}
	if _, err := VerifyResponse(signed, w.own.h.ID(), env, w.now.Add(2*time.Minute)); err == nil {
		t.Error("accepted an expired grant")
	}
	forged, _ := SignResponse(w.outsider.id, &good)
	if _, err := VerifyResponse(forged, w.own.h.ID(), env, w.now); !errors.Is(err, crypto.ErrBadSignature) {
		t.Errorf("response signed by another facility: %v", err)
	}
	asReq := crypto.SignEnvelope(w.own.id, RequestDomain, canon.Marshal(&good))
	if _, err := VerifyResponse(asReq, w.own.h.ID(), env, w.now); !errors.Is(err, crypto.ErrBadSignature) {
		t.Errorf("a response signed in the request domain: %v", err)
	}
}

// FuzzRequest: decoding arbitrary bytes as a request never panics, and what
// decodes and validates re-encodes to the same bytes.
func FuzzRequest(f *testing.F) {
	id, _ := crypto.GenerateIdentity(rand.Reader)
	r := Request{Federation: "f", Requester: "a", Owner: "b", User: "u", Purpose: "TREAT", Manifests: []string{"m"}, Nonce: make([]byte, 16), Time: 1}
	env, _ := SignRequest(id, &r)
	f.Add(env.Body)
	f.Add(canon.Marshal(&Response{Request: make([]byte, 32), Decision: Granted}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if canon.Unmarshal(b, &r) != nil {
			return
		}
		if got := canon.Marshal(&r); string(got) != string(b) {
			t.Fatalf("re-encoding differs")
		}
		r.Validate()
		var resp Response
		if canon.Unmarshal(b, &resp) == nil {
			resp.Validate()
		}
	})
}
