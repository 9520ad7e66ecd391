package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/dicomesh/dicomesh/federation"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/dimse"
)

var archiveAll = archive.Query{}

// runFile is written into the home while the node runs, so that other
// commands for the same home can find the running node.
const runFile = "node.json"

// RunInfo describes a running node: the addresses it actually listens on.
type RunInfo struct {
	PeerID string   `json:"peer_id"`
	P2P    []string `json:"p2p"`
	HTTP   string   `json:"http"`
	DICOM  string   `json:"dicom,omitempty"`
	Pprof  string   `json:"pprof,omitempty"`
	PID    int      `json:"pid"`
}

// RunOptions override the configured listen addresses (port 0 is allowed).
type RunOptions struct {
	P2P []string
	// Announce overrides the configured announce addresses.
	Announce []string
	HTTP     string
	// DICOM and AET override the DIMSE listener and AE title.
	DICOM, AET string
	// Pprof, if set, is a loopback HOST:PORT where the Go runtime's
	// profiles are served (net/http/pprof) for diagnosing performance.
	Pprof string
	// Ready, if set, is called once every listener is up.
	Ready func(RunInfo)
}

// ReadRunInfo reads node.json of a running node in h.
func ReadRunInfo(h Home) (RunInfo, error) {
	var ri RunInfo
	data, err := os.ReadFile(h.Path(runFile))
	if errors.Is(err, os.ErrNotExist) {
		return ri, fmt.Errorf("no node is running for %s (start one with dicomesh run)", h)
	}
	if err != nil {
		return ri, err
	}
	if err := json.Unmarshal(data, &ri); err != nil {
		return ri, fmt.Errorf("read %s: %w", h.Path(runFile), err)
	}
	return ri, nil
}

// Run starts the node's listeners and serves until ctx is cancelled, then
// shuts down cleanly.
func (n *Node) Run(ctx context.Context, ro RunOptions) error {
	listen := n.Config.P2P
	if len(ro.P2P) > 0 {
		listen = ro.P2P
	}
	announce := n.Config.Announce
	if len(ro.Announce) > 0 {
		announce = ro.Announce
	}
	httpAddr := n.Config.HTTP
	if ro.HTTP != "" {
		httpAddr = ro.HTTP
	}
	reg := n.newMetrics()
	members := federation.NewMembers(nil)
	h, err := newHost(hostConfig{identity: n.Identity, listen: listen, announce: announce, metrics: reg, gater: federation.Gater{M: members}})
	if err != nil {
		return err
	}
	defer h.Close()
	n.rtMu.Lock()
	n.running = &running{ctx: ctx, h: h, members: members}
	n.rtMu.Unlock()
	defer func() {
		if rt := n.runtime(); rt != nil {
			rt.stop()
		}
		n.rtMu.Lock()
		n.running = nil
		n.rtMu.Unlock()
	}()
	if fs, err := n.loadFed(); err == nil {
		if _, err := n.startFederation(ctx, h, members, fs); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNoFederation) {
		return err
	}

	// What an earlier run acknowledged over DIMSE and did not commit is
	// committed before the interfaces open: no other writer can hold its
	// studies yet.
	n.recoverSpool(ctx)
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	srv := &http.Server{
		Handler:           n.handler(reg, []check{{"archive", func() error { return nil }}, {"registry", n.registryReady}}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	info := RunInfo{PeerID: h.ID().String(), HTTP: ln.Addr().String(), PID: os.Getpid()}
	if addr := cmp.Or(ro.DICOM, n.Config.DICOM); addr != "" {
		// A PACS or modality sends studies in here. A busy port is a
		// warning, not a failure: the node's federation work goes on.
		if dl, err := net.Listen("tcp", addr); err != nil {
			n.log.Warn("no DIMSE listener", "addr", addr, "err", err)
		} else {
			srv := dimse.NewServer(dimse.Config{AET: cmp.Or(ro.AET, n.Config.AET), Store: n, Finder: n, Mover: n, WithActor: WithActor,
				Logger: n.log.With("component", "dimse")})
			done := make(chan struct{})
			go func() { srv.Serve(ctx, dl); close(done) }()
			defer func() { dl.Close(); <-done }()
			info.DICOM = dl.Addr().String()
		}
	}
	if ro.Pprof != "" {
		pl, err := listenLoopback(ro.Pprof)
		if err != nil {
			srv.Close()
			return fmt.Errorf("pprof listener: %w", err)
		}
		ps := &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		go ps.Serve(pl)
		defer ps.Close()
		info.Pprof = pl.Addr().String()
	}
	for _, a := range h.Addrs() {
		info.P2P = append(info.P2P, a.String()+"/p2p/"+h.ID().String())
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(n.Home.Path(runFile), append(data, '\n'), 0o600); err != nil {
		srv.Close()
		return fmt.Errorf("write %s: %w", runFile, err)
	}
	defer os.Remove(n.Home.Path(runFile))
	if err := n.record(ctx, audit.Record{Event: audit.EventApplicationActivity, Subtype: audit.SubtypeApplicationStart,
		Action: audit.ActionExecute, Outcome: audit.Success, Query: "node started"}); err != nil {
		srv.Close()
		return err
	}
	defer n.record(context.WithoutCancel(ctx), audit.Record{Event: audit.EventApplicationActivity, Subtype: audit.SubtypeApplicationStop,
		Action: audit.ActionExecute, Outcome: audit.Success, Query: "node stopped"})
	n.log.Info("node running", "peer", info.PeerID, "http", info.HTTP)
	if ro.Ready != nil {
		ro.Ready(info)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	n.log.Info("node stopped")
	return nil
}

// listenLoopback listens on addr, which must be a loopback address.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s: only a loopback IP address is allowed", addr)
	}
	return net.Listen("tcp", addr)
}

// pprofHandler serves the runtime's profiles under /debug/pprof/. They
// describe the program (stacks, allocation sites, timings), not the data it
// holds.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
