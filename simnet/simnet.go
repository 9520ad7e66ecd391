package simnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/dicomesh/dicomesh/node"
)

// Config describes a federation to start.
type Config struct {
	// Dir holds the facilities' homes, one folder each.
	Dir string
	// Federation is the federation's name.
	Federation string
	// Facilities are the members' names; the first founds the federation.
	Facilities []string
	// Logger receives the nodes' operational logs; nil discards them.
	Logger *slog.Logger
	// NoSync turns off fsync in the stores (tests and scale runs only).
	NoSync bool
}

// Member is one facility of the federation, running in this process.
type Member struct {
	Name string
	Home node.Home
	Node *node.Node
	Info node.RunInfo

	cancel context.CancelFunc
	done   chan error
}

// Net is a running federation.
type Net struct {
	Members []*Member
	cfg     Config
}

// Start creates a home per facility, founds the federation at the first,
// has each other facility join with an invitation from the first, runs
// every node on loopback with ephemeral ports, and returns once every
// member sees every other as an active voter under one leader.
func Start(ctx context.Context, cfg Config) (*Net, error) {
	if len(cfg.Facilities) == 0 || cfg.Dir == "" {
		return nil, errors.New("simnet: a folder and at least one facility are needed")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	net := &Net{cfg: cfg}
	for i, name := range cfg.Facilities {
		home := node.Home(filepath.Join(cfg.Dir, fmt.Sprintf("%02d", i)))
		c := node.DefaultConfig()
		c.Facility = name
		c.P2P = []string{"/ip4/127.0.0.1/tcp/0"}
		c.HTTP = "127.0.0.1:0"
		c.DICOM = "" // no DIMSE listener: many nodes share this machine
		if _, err := node.Init(home, c); err != nil {
			net.Close()
			return nil, err
		}
		n, err := node.Open(home, node.Options{Logger: cfg.Logger.With("facility", name), NoSync: cfg.NoSync})
		if err != nil {
			net.Close()
			return nil, err
		}
		m := &Member{Name: name, Home: home, Node: n}
		net.Members = append(net.Members, m)
		if i == 0 {
			if _, err := n.CreateFederation(ctx, cfg.Federation); err != nil {
				net.Close()
				return nil, err
			}
		} else {
			tok, err := net.Members[0].Node.Invite(ctx, name, time.Hour)
			if err == nil {
				_, err = n.Join(ctx, tok)
			}
			if err != nil {
				net.Close()
				return nil, fmt.Errorf("simnet: %s joins: %w", name, err)
			}
		}
		if err := m.start(); err != nil {
			net.Close()
			return nil, err
		}
	}
	if err := net.WaitVoters(ctx, len(cfg.Facilities)); err != nil {
		net.Close()
		return nil, err
	}
	return net, nil
}

// start runs the member's node until Stop.
func (m *Member) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan node.RunInfo, 1)
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() {
		m.done <- m.Node.Run(ctx, node.RunOptions{Ready: func(ri node.RunInfo) { ready <- ri }})
	}()
	select {
	case m.Info = <-ready:
		return nil
	case err := <-m.done:
		return fmt.Errorf("simnet: %s: %w", m.Name, err)
	}
}

// Stop stops the member's node cleanly (its stores stay open).
func (m *Member) Stop() error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	m.cancel = nil
	return <-m.done
}

// WaitVoters waits until every running member sees n active voters and a
// leader.
func (net *Net) WaitVoters(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, m := range net.Members {
		if m.cancel == nil {
			continue
		}
		for {
			ms, err := m.Node.Members()
			voters, leader := 0, false
			for _, x := range ms {
				if x.Role == "voter" && x.Status == "active" {
					voters++
				}
				leader = leader || x.Leader
			}
			if err == nil && voters == n && leader {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("simnet: %s does not see %d voters and a leader: %w", m.Name, n, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Close stops every node and closes its stores.
func (net *Net) Close() error {
	var errs []error
	for _, m := range net.Members {
		errs = append(errs, m.Stop(), m.Node.Close())
	}
	return errors.Join(errs...)
}
