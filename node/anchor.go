package node

import (
	"context"
	"time"

	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

// anchor publishes this facility's latest signed audit checkpoint in the
// registry when it is newer than the one anchored there, with the RFC 6962
// consistency proof from that one: every member can then check that this
// facility's log only ever grew.
func (rt *fedRuntime) anchor(ctx context.Context) {
	if fed, _ := rt.fsm.Federation(); fed == "" {
		return // the replica has not caught up: what is anchored already is unknown
	}
	cps := rt.n.Audit.Checkpoints()
	if len(cps) == 0 || rt.n.Audit.Size() > cps[len(cps)-1].Size {
		// Sign what was appended since the last checkpoint.
		if _, err := rt.n.Audit.Checkpoint(ctx); err != nil {
			return
		}
		cps = rt.n.Audit.Checkpoints()
	}
	if len(cps) == 0 {
		return
	}
	latest := cps[len(cps)-1]
	var prevSize uint64
	if prev := rt.fsm.Checkpoints(rt.n.FacilityID); len(prev) > 0 {
		prevSize = prev[len(prev)-1].Size
	}
	if latest.Size <= prevSize {
		return
	}
	var proof [][]byte
	if prevSize > 0 {
		var err error
		if proof, err = rt.n.Audit.ConsistencyProof(prevSize, latest.Size); err != nil {
			rt.n.log.Warn("cannot prove the audit log's consistency", "err", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rt.commit(ctx, registry.KindAnchorAuditCheckpoint, &registry.Checkpoint{Note: latest.Note, Size: latest.Size, Root: latest.Root, Proof: proof}); err != nil {
		rt.n.log.Warn("cannot anchor the audit checkpoint", "size", latest.Size, "err", err)
	}
}

// Anchored returns the audit checkpoints a facility anchored in the
// registry (audit.Anchor): Verify re-verifies each signed note.
func (rt *fedRuntime) Anchored(_ context.Context, facility string) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	for _, c := range rt.fsm.Checkpoints(facility) {
		out = append(out, audit.Checkpoint{Origin: registry.AuditOrigin(facility), Size: c.Size, Root: c.Root, Note: c.Note})
	}
	return out, nil
}

var _ audit.Anchor = (*fedRuntime)(nil)

// VerifyAudit verifies the facility's audit log offline against its own
// checkpoints and, on a running member, against those anchored in the
// registry. The reading is recorded first.
func (n *Node) VerifyAudit(ctx context.Context, a audit.Actor) (*audit.Report, error) {
	return n.Audit.Verify(ctx, a, nodeAnchor{n})
}

// nodeAnchor is the registry's anchored checkpoints while the node runs in
// a federation, and none otherwise.
type nodeAnchor struct{ n *Node }

func (a nodeAnchor) Anchored(ctx context.Context, facility string) ([]audit.Checkpoint, error) {
	if rt := a.n.runtime(); rt != nil {
		return rt.Anchored(ctx, facility)
	}
	return nil, nil
}
