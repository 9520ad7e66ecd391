package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// cluster is an in-memory Raft cluster of registry replicas.
type cluster struct {
	t     *testing.T
	mu    sync.Mutex
	nodes []*replica
}

type replica struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	fsm   *FSM
	r     *raft.Raft
	trans *raft.InmemTransport
	logs  *raft.InmemStore
	snaps *raft.InmemSnapshotStore
	down  bool
}

func testConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 64
	c.TrailingLogs = 16
	c.Logger = hclog.NewNullLogger()
	return c
}

func newCluster(t *testing.T, voters int) *cluster {
	c := &cluster{t: t}
	var servers []raft.Server
	for i := range voters {
		n := c.add(fmt.Sprintf("r%d", i))
		servers = append(servers, raft.Server{ID: n.id, Address: n.addr})
	}
	if err := c.nodes[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.shutdown)
	c.leader()
	return c
}

// add starts a replica with empty stores, connected to every other.
func (c *cluster) add(name string) *replica {
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(name))
	n := &replica{id: raft.ServerID(name), addr: addr, fsm: New(), trans: trans, logs: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
	c.start(n)
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	c.connect(n)
	return n
}

func (c *cluster) start(n *replica) {
	r, err := raft.NewRaft(testConfig(n.id), n.fsm, n.logs, n.logs, n.snaps, n.trans)
	if err != nil {
		c.t.Fatal(err)
	}
	n.r, n.down = r, false
}

func (c *cluster) connect(n *replica) {
	for _, o := range c.nodes {
		if o != n && !o.down {
			n.trans.Connect(o.addr, o.trans)
			o.trans.Connect(n.addr, n.trans)
		}
	}
}

// isolate cuts n off from every other replica.
func (c *cluster) isolate(n *replica) {
	n.trans.DisconnectAll()
	for _, o := range c.nodes {
		o.trans.Disconnect(n.addr)
	}
}

func (c *cluster) heal() {
	for _, n := range c.nodes {
		if !n.down {
			c.connect(n)
		}
	}
}

// kill stops a replica as a crash would: it keeps its stores.
func (c *cluster) kill(n *replica) {
	c.isolate(n)
	n.r.Shutdown().Error()
	n.down = true
}

// restart starts a killed replica again on its stores, with a fresh FSM
// rebuilt from its snapshot and log.
func (c *cluster) restart(n *replica) {
	n.fsm = New()
	n.addr, n.trans = raft.NewInmemTransport(n.addr)
	c.start(n)
	c.connect(n)
}

func (c *cluster) shutdown() {
	for _, n := range c.nodes {
		if !n.down {
			n.r.Shutdown().Error()
		}
	}
}

// leader waits for a leader among the running replicas.
func (c *cluster) leader() *replica {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if !n.down && n.r.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return nil
}

func (c *cluster) apply(s Signed) Result {
	c.t.Helper()
	for range 50 {
		l := c.leader()
		f := l.r.Apply(s, 2*time.Second)
		if err := f.Error(); err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		return f.Response().(Result)
	}
	c.t.Fatal("could not apply")
	return Result{}
}

// converge waits until every running replica holds the leader's state.
func (c *cluster) converge() {
	c.t.Helper()
	l := c.leader()
	if err := l.r.Barrier(5 * time.Second).Error(); err != nil {
		c.t.Fatal(err)
	}
	want := l.fsm.State()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		for !bytes.Equal(stripIndex(n.fsm.State()), stripIndex(want)) {
			if time.Now().After(deadline) {
				c.t.Fatalf("replica %s did not converge", n.id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stripIndex re-encodes a state without its applied index, which moves
// with entries the FSM does not see (configuration changes, barriers).
func stripIndex(state []byte) []byte {
	f := New()
	f.Restore(io.NopCloser(bytes.NewReader(state)))
	f.st.index = 0
	return f.State()
}

func TestClusterReplicates(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newCluster(t, size)
			w := newWorld(t) // for its founder and secrets
			b := newMember(t)
			create := w.a.sign(t, KindCreateFederation, &CreateFederation{Name: "Valley", Founder: w.a.record(t, "Rural", w.sec)}, t0)
			if r := c.apply(create); r.Code != OK {
				t.Fatal(r)
			}
			if r := c.apply(w.a.sign(t, KindAdmitFacility, w.admission(t, w.a, b, "Regional", t0.Add(time.Hour)), t0)); r.Code != OK {
				t.Fatal(r)
			}
			for i := range 20 {
				if r := c.apply(w.a.sign(t, KindPublishManifest, manifest(w.a, fmt.Sprint("m", i), 1), t0)); r.Code != OK {
					t.Fatal(r)
				}
			}
			c.converge()

			// The leader dies: another is elected and the log goes on.
			old := c.leader()
			c.kill(old)
			if r := c.apply(w.a.sign(t, KindPublishManifest, manifest(w.a, "after-kill", 1), t0)); r.Code != OK {
				t.Fatal(r)
			}
			// The dead leader restarts on its stores and catches up.
			c.restart(old)
			c.converge()
			if _, _, ok := old.fsm.Manifest("after-kill"); !ok {
				t.Fatal("the restarted replica did not catch up")
			}
			// A follower is partitioned away, misses writes, and catches up
			// once healed.
			f := c.follower()
			c.isolate(f)
			for i := range 10 {
				if r := c.apply(w.a.sign(t, KindPublishManifest, manifest(w.a, fmt.Sprint("p", i), 1), t0)); r.Code != OK {
					t.Fatal(r)
				}
			}
			if _, _, ok := f.fsm.Manifest("p9"); ok {
				t.Fatal("an isolated replica applied a write")
			}
			c.heal()
			c.converge()
			if _, _, ok := f.fsm.Manifest("p9"); !ok {
				t.Fatal("the partitioned replica did not catch up")
			}
		})
	}
}

func (c *cluster) follower() *replica {
	for _, n := range c.nodes {
		if !n.down && n.r.State() == raft.Follower {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// TestNonvoterFromSnapshot: a member added after the log was compacted
// catches up from a snapshot, restored byte for byte.
func TestNonvoterFromSnapshot(t *testing.T) {
	c := newCluster(t, 3)
	w := newWorld(t)
	c.apply(w.a.sign(t, KindCreateFederation, &CreateFederation{Name: "Valley", Founder: w.a.record(t, "Rural", w.sec)}, t0))
	for i := range 100 {
		c.apply(w.a.sign(t, KindPublishManifest, manifest(w.a, fmt.Sprint("m", i), 1), t0))
	}
	l := c.leader()
	if err := l.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	n := c.add("late")
	if err := l.r.AddNonvoter(n.id, n.addr, 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	c.converge()
	snaps, _ := n.snaps.List()
	if len(snaps) == 0 {
		t.Fatal("the new member did not install a snapshot")
	}
	if _, _, ok := n.fsm.Manifest("m0"); !ok {
		t.Fatal("the new member lacks the first manifest")
	}
}

// The linearizability model: one manifest's version, written by
// compare-and-set (ReplaceManifest from v to v+1) and read through
// ReadBarrier.
type casInput struct {
	read bool
	from uint64
}

type casOutput struct {
	ok, unknown bool
	value       uint64
}

var casModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{uint64(1)} },
	Step: func(state, input, output any) []any {
		v, in, out := state.(uint64), input.(casInput), output.(casOutput)
		switch {
		case in.read:
			if out.value == v {
				return []any{v}
			}
			return nil
		case out.unknown:
			if v == in.from {
				return []any{v, v + 1}
			}
			return []any{v}
		case out.ok:
			if v == in.from {
				return []any{v + 1}
			}
			return nil
		default: // refused: the version was not from
			if v != in.from {
				return []any{v}
			}
			return nil
		}
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(casInput), out.(casOutput)
		if i.read {
			return fmt.Sprintf("read -> %d", o.value)
		}
		return fmt.Sprintf("cas %d->%d ok=%v unknown=%v", i.from, i.from+1, o.ok, o.unknown)
	},
}

// TestLinearizable: concurrent clients write and read one manifest through
// different replicas while a nemesis isolates, kills and restarts them;
// the history must be linearizable and no acknowledged write lost. Set
// DICOMESH_PORCUPINE to a duration (e.g. 60s) for a longer run.
func TestLinearizable(t *testing.T) {
	dur := 3 * time.Second
	if s := os.Getenv("DICOMESH_PORCUPINE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		dur = d
	} else if !testing.Short() {
		dur = 10 * time.Second
	}
	c := newCluster(t, 3)
	w := newWorld(t)
	c.apply(w.a.sign(t, KindCreateFederation, &CreateFederation{Name: "Valley", Founder: w.a.record(t, "Rural", w.sec)}, t0))
	c.apply(w.a.sign(t, KindPublishManifest, manifest(w.a, "m", 1), t0))

	var (
		hmu     sync.Mutex
		history []porcupine.Operation
		acked   atomic.Int64
		start   = time.Now()
	)
	record := func(client int, in casInput, out casOutput, call, ret time.Time) {
		hmu.Lock()
		history = append(history, porcupine.Operation{ClientId: client, Input: in, Output: out,
			Call: call.Sub(start).Nanoseconds(), Return: ret.Sub(start).Nanoseconds()})
		hmu.Unlock()
	}
	// Clients act through the replica they picked; a write that cannot be
	// confirmed is unknown, forever pending.
	const unknownReturn = 1 << 62
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var cmu sync.Mutex // guards the cluster's topology against the nemesis
	var wg sync.WaitGroup
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(client), 7))
			for ctx.Err() == nil {
				cmu.Lock()
				var live []*replica
				for _, n := range c.nodes {
					if !n.down {
						live = append(live, n)
					}
				}
				n := live[rng.IntN(len(live))]
				r, fsm := n.r, n.fsm
				cmu.Unlock()
				call := time.Now()
				if rng.IntN(2) == 0 {
					if err := ReadBarrier(ctx, r); err != nil {
						continue // not the leader, or cut off: no read happened
					}
					m, _, _ := fsm.Manifest("m")
					record(client, casInput{read: true}, casOutput{value: m.Version}, call, time.Now())
					continue
				}
				m, _, _ := fsm.Manifest("m") // a guess; the FSM decides
				s := w.a.sign(t, KindReplaceManifest, manifest(w.a, "m", m.Version+1), t0)
				f := r.Apply(s, 300*time.Millisecond)
				err := f.Error()
				switch {
				case errors.Is(err, raft.ErrNotLeader):
					continue // refused before it entered the log
				case err != nil:
					record(client, casInput{from: m.Version}, casOutput{unknown: true}, call, time.Unix(0, unknownReturn+start.UnixNano()))
				default:
					res := f.Response().(Result)
					ok := res.Code == OK
					if ok {
						acked.Add(1)
					}
					record(client, casInput{from: m.Version}, casOutput{ok: ok}, call, time.Now())
				}
			}
		}()
	}
	// The nemesis.
	rng := mrand.New(mrand.NewPCG(99, 1))
	faults := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		cmu.Lock()
		switch rng.IntN(4) {
		case 0:
			c.isolate(c.nodes[rng.IntN(len(c.nodes))])
		case 1:
			for _, n := range c.nodes {
				if !n.down && n.r.State() == raft.Leader {
					c.isolate(n)
				}
			}
		case 2:
			var up []*replica
			for _, n := range c.nodes {
				if !n.down {
					up = append(up, n)
				}
			}
			if len(up) == len(c.nodes) {
				c.kill(up[rng.IntN(len(up))])
			}
		default:
			for _, n := range c.nodes {
				if n.down {
					c.restart(n)
				}
			}
			c.heal()
		}
		faults++
		cmu.Unlock()
	}
	wg.Wait()
	cmu.Lock()
	for _, n := range c.nodes {
		if n.down {
			c.restart(n)
		}
	}
	c.heal()
	cmu.Unlock()

	// No acknowledged write is lost: the final version counts them all.
	l := c.leader()
	if err := ReadBarrier(context.Background(), l.r); err != nil {
		t.Fatal(err)
	}
	final, _, _ := l.fsm.Manifest("m")
	if int64(final.Version-1) < acked.Load() {
		t.Fatalf("final version %d, but %d writes were acknowledged", final.Version, acked.Load())
	}
	res, info := porcupine.CheckOperationsVerbose(casModel.ToModel(), history, time.Minute)
	if res == porcupine.Unknown {
		t.Skipf("the checker ran out of time on %d operations: no verdict", len(history))
	}
	if res != porcupine.Ok {
		f, _ := os.CreateTemp("", "registry-history-*.html")
		porcupine.Visualize(casModel.ToModel(), info, f)
		t.Fatalf("history of %d operations is %s (visualization: %s)", len(history), res, f.Name())
	}
	t.Logf("%d operations, %d acknowledged writes, %d faults, final version %d: linearizable", len(history), acked.Load(), faults, final.Version)
}
