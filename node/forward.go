package node

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/crypto/canon"
	"github.com/dicomesh/dicomesh/federation"
	"github.com/dicomesh/dicomesh/registry"
)

// Writes submitted at a follower are forwarded to the leader in batches:
// the commands submitted while a call is under way go together in the
// next one, so that concurrent writers share round trips, as etcd's
// followers forward proposals inside Raft's own messages. Up to
// forwardCalls calls are under way at once.
const (
	forwardBatch      = 128
	forwardBatchBytes = 512 << 10
	forwardCalls      = 4
)

// applyBatch is what a follower sends the leader: signed commands.
type applyBatch struct{ Commands [][]byte }

func (b *applyBatch) MarshalCanonical(e *canon.Encoder) { e.BytesList(1, b.Commands) }
func (b *applyBatch) UnmarshalCanonical(d *canon.Decoder) {
	b.Commands = d.BytesList(1)
}

// applyResults answers an applyBatch, command by command: a result, or
// why the command could not be applied (then the follower retries it).
type applyResults struct {
	Results []registry.Result
	Errors  []string
}

func (r *applyResults) MarshalCanonical(e *canon.Encoder) {
	e.Messages(1, len(r.Results), func(i int) canon.Marshaler { return &r.Results[i] })
	e.Strings(2, r.Errors)
}

func (r *applyResults) UnmarshalCanonical(d *canon.Decoder) {
	d.Messages(1, func(d *canon.Decoder) {
		var res registry.Result
		res.UnmarshalCanonical(d)
		r.Results = append(r.Results, res)
	})
	r.Errors = d.Strings(2)
}

type forwardReq struct {
	leader peer.ID
	cmd    registry.Signed
	done   chan forwardDone
}

type forwardDone struct {
	res registry.Result
	err error
}

// forward submits cmd through the leader, batched with others.
func (rt *fedRuntime) forward(ctx context.Context, leader peer.ID, cmd registry.Signed) (registry.Result, error) {
	req := forwardReq{leader: leader, cmd: cmd, done: make(chan forwardDone, 1)}
	select {
	case rt.fwd <- req:
	case <-ctx.Done():
		return registry.Result{}, ctx.Err()
	}
	select {
	case d := <-req.done:
		return d.res, d.err
	case <-ctx.Done():
		return registry.Result{}, ctx.Err()
	}
}

// forwardLoop gathers forwarded commands into batches, one leader a
// batch, until ctx ends.
func (rt *fedRuntime) forwardLoop(ctx context.Context) {
	calls := make(chan struct{}, forwardCalls)
	var carry *forwardReq // taken but left for the next batch
	for {
		var first forwardReq
		if carry != nil {
			first, carry = *carry, nil
		} else {
			select {
			case first = <-rt.fwd:
			case <-ctx.Done():
				return
			}
		}
		select {
		case calls <- struct{}{}: // a call slot is free: gather what waits
		case <-ctx.Done():
			first.done <- forwardDone{err: ctx.Err()}
			return
		}
		batch, size := []forwardReq{first}, len(first.cmd)
	gather:
		for len(batch) < forwardBatch {
			select {
			case r := <-rt.fwd:
				if r.leader != first.leader || size+len(r.cmd) > forwardBatchBytes {
					carry = &r
					break gather
				}
				batch, size = append(batch, r), size+len(r.cmd)
			default:
				break gather
			}
		}
		go func() {
			defer func() { <-calls }()
			rt.forwardBatch(first.leader, batch)
		}()
	}
}

func (rt *fedRuntime) forwardBatch(leader peer.ID, batch []forwardReq) {
	b := applyBatch{Commands: make([][]byte, len(batch))}
	for i, r := range batch {
		b.Commands[i] = r.cmd
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := rt.apply.Call(ctx, leader, canon.Marshal(&b))
	var res applyResults
	if err == nil {
		err = canon.Unmarshal(out, &res)
	}
	if err == nil && (len(res.Results) != len(batch) || len(res.Errors) != len(batch)) {
		err = errors.New("node: the leader answered a batch with the wrong count")
	}
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- forwardDone{err: err}
		case res.Errors[i] != "":
			r.done <- forwardDone{err: errors.New(res.Errors[i])}
		default:
			r.done <- forwardDone{res: res.Results[i]}
		}
	}
}

// serveApply is the leader's side of forwarding: every command of the
// batch is handed to Raft at once, and each answered with its own result.
func (rt *fedRuntime) serveApply(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	if rt.r.State() != raft.Leader {
		_, lid := rt.r.LeaderWithID()
		return nil, &federation.RemoteError{Code: "not-leader", Message: "not the leader", Leader: string(lid)}
	}
	var b applyBatch
	if err := canon.Unmarshal(req, &b); err != nil {
		return nil, &federation.RemoteError{Code: "malformed", Message: err.Error()}
	}
	if len(b.Commands) == 0 || len(b.Commands) > forwardBatch {
		return nil, &federation.RemoteError{Code: "malformed", Message: "a batch of 1 to 128 commands"}
	}
	fs := make([]raft.ApplyFuture, len(b.Commands))
	for i, c := range b.Commands {
		fs[i] = rt.r.Apply(c, 10*time.Second)
	}
	res := applyResults{Results: make([]registry.Result, len(fs)), Errors: make([]string, len(fs))}
	for i, f := range fs {
		if err := f.Error(); err != nil {
			res.Errors[i] = err.Error()
			continue
		}
		res.Results[i] = f.Response().(registry.Result)
	}
	return canon.Marshal(&res), nil
}
