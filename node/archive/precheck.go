package archive

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"

	"github.com/dicomesh/dicomesh/crypto"
)

// Precheck checks the instances of a study being received while its
// blocks still arrive: each instance is decrypted and compared with the
// detail manifest as soon as all its blocks are in the store, so that the
// fetch and the checks overlap and CommitReceived has only what is left
// to check. Blocks are addressed by content, so an instance checked once
// stays checked.
type Precheck struct {
	a    *Archive
	root cid.Cid
	key  *crypto.StudyKey
	rcv  *Receiver // the blocks' receiver, whose kept blocks are checked from memory
	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}

	mu     sync.Mutex
	st     Study     // the detail manifest, once here
	loaded bool      // st is set
	first  time.Time // when the first instance was checked
	n      int       // instances checked
}

// Precheck starts checking the instances of the study under root as
// their blocks arrive through rcv; call Arrived when blocks come in and
// Stop before CommitReceived.
func (a *Archive) Precheck(ctx context.Context, root cid.Cid, key *crypto.StudyKey, rcv *Receiver) *Precheck {
	ctx, cancel := context.WithCancel(ctx)
	p := &Precheck{a: a, root: root, key: key, rcv: rcv, wake: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go p.run(ctx)
	return p
}

// Arrived tells the check that blocks came in.
func (p *Precheck) Arrived() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Stop ends the check and waits for it; what was checked stays recorded
// for CommitReceived. It returns how many instances were checked and when
// the first one was.
func (p *Precheck) Stop() (int, time.Time) {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.first
}

// wait blocks until more blocks arrived; false once the check is stopped.
func (p *Precheck) wait(ctx context.Context) bool {
	select {
	case <-p.wake:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *Precheck) run(ctx context.Context) {
	defer close(p.done)
	var st Study
	for {
		var err error
		if st, _, err = loadManifest(ctx, p.a.bs, p.root, p.key); err == nil {
			p.mu.Lock()
			p.st, p.loaded = st, true
			p.mu.Unlock()
			break
		}
		if !p.wait(ctx) {
			return
		}
	}
	// The feeder waits for each instance's blocks in the order they are
	// fetched in, the order of the root's links; a few workers check.
	order := p.fetchOrder(ctx, st)
	next := make(chan Instance)
	var wg sync.WaitGroup
	for range exportWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range next {
				if p.a.checkInstance(ctx, receivedChunks{p.a.bs, p.rcv}, p.key, in) != nil {
					continue // left to CommitReceived, which names the failure
				}
				p.a.mu.Lock()
				if p.a.checked[p.root] == nil {
					p.a.checked[p.root] = map[cid.Cid]bool{}
				}
				p.a.checked[p.root][in.Root] = true
				p.a.mu.Unlock()
				p.mu.Lock()
				if p.n == 0 {
					p.first = time.Now()
				}
				p.n++
				p.mu.Unlock()
			}
		}()
	}
	defer wg.Wait()
	defer close(next)
	for _, in := range order {
		for !p.present(ctx, in.Root) {
			if !p.wait(ctx) {
				return
			}
		}
		select {
		case next <- in:
		case <-ctx.Done():
			return
		}
	}
}

// fetchOrder lists the study's instances in the order of the root's links,
// which is the order a fetch brings them in: dag-pb sorts links by name, so
// "i10" comes before "i2" and the manifest's order is not the fetch's.
func (p *Precheck) fetchOrder(ctx context.Context, st Study) []Instance {
	byRoot := map[cid.Cid][]Instance{}
	var order []Instance
	for _, se := range st.Series {
		for _, in := range se.Instances {
			byRoot[in.Root] = append(byRoot[in.Root], in)
			order = append(order, in)
		}
	}
	blk, err := p.a.bs.Get(ctx, p.root)
	if err != nil {
		return order
	}
	nd, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return order
	}
	order = order[:0]
	for _, l := range nd.Links() {
		order = append(order, byRoot[l.Cid]...)
		delete(byRoot, l.Cid)
	}
	for _, ins := range byRoot { // not linked from the root: CommitReceived names that
		order = append(order, ins...)
	}
	return order
}

// Study returns the study being received as its detail manifest describes
// it, with only the instances checked so far, and false until the manifest
// is here. It is not committed: it may never be.
func (p *Precheck) Study() (Study, bool) {
	p.mu.Lock()
	st, ok := p.st, p.loaded
	p.mu.Unlock()
	if !ok {
		return Study{}, false
	}
	p.a.mu.RLock()
	done := p.a.checked[p.root]
	series := make([]Series, 0, len(st.Series))
	st.Instances = 0
	for _, se := range st.Series {
		var ins []Instance
		for _, in := range se.Instances {
			if done[in.Root] {
				ins = append(ins, in)
			}
		}
		if len(ins) > 0 {
			se.Instances = ins
			series = append(series, se)
			st.Instances += len(ins)
		}
	}
	p.a.mu.RUnlock()
	st.Series, st.SeriesCount = series, len(series)
	return st, true
}

// ReadInstance returns the original bytes of an instance of the study
// being received, once it was checked against the manifest.
func (p *Precheck) ReadInstance(ctx context.Context, sop string) (io.ReadCloser, error) {
	st, ok := p.Study()
	if !ok {
		return nil, ErrNotFound
	}
	for _, se := range st.Series {
		for _, in := range se.Instances {
			if in.SOPInstanceUID == sop {
				r, err := openInstance(ctx, p.a.bs, p.key, in)
				if err != nil {
					return nil, err
				}
				return r, nil
			}
		}
	}
	return nil, ErrNotFound
}

// present reports whether the instance DAG under root is all in the store.
func (p *Precheck) present(ctx context.Context, root cid.Cid) bool {
	if root.Type() != cid.DagProtobuf {
		// One raw block: whether it is there, not its bytes, which the
		// check reads anyway.
		if p.rcv.kept(root) {
			return true
		}
		has, err := p.a.bs.Has(ctx, root)
		return err == nil && has
	}
	blk, err := p.a.bs.Get(ctx, root)
	if err != nil {
		return false
	}
	nd, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return true // CommitReceived names the failure
	}
	for _, l := range nd.Links() {
		if has, err := p.a.bs.Has(ctx, l.Cid); err != nil || !has {
			return false
		}
	}
	return true
}
