package node

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// raftStores are the durable stores of the node's registry replica.
type raftStores struct {
	wal   *wal.WAL
	snaps *raft.FileSnapshotStore
}

// openRaftStores opens (creating if needed) the write-ahead log that serves as
// Raft's log and stable store, and the snapshot store, under dir.
func openRaftStores(dir string, log hclog.Logger) (*raftStores, error) {
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("raft stores: %w", err)
	}
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("raft log %s: %w", dir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, log)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("raft snapshots %s: %w", dir, err)
	}
	return &raftStores{wal: w, snaps: snaps}, nil
}

func (s *raftStores) Close() error { return s.wal.Close() }

// raftConfig is the Raft configuration of a node: the peer id is the server
// id, and batching is tuned for many small signed commands.
func raftConfig(id string, log hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(id)
	c.Logger = log
	c.MaxAppendEntries = 512
	c.BatchApplyCh = true
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 8192
	c.TrailingLogs = 10240
	return c
}
