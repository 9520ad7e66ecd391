package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// raftStores are the durable stores of the node's registry replica.
type raftStores struct {
	wal   *wal.WAL
	meta  *metadb.BoltMetaDB
	snaps *raft.FileSnapshotStore
}

// openRaftStores opens (creating if needed) the write-ahead log that serves as
// Raft's log and stable store, and the snapshot store, under dir.
func openRaftStores(dir string, log hclog.Logger) (*raftStores, error) {
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("raft stores: %w", err)
	}
	// The WAL does not close the metadata store it opens itself, which
	// would keep its file locked after Close; so it gets one it can close.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.WithLogger(log), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("raft log %s: %w", dir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, log)
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("raft snapshots %s: %w", dir, err)
	}
	return &raftStores{wal: w, meta: meta, snaps: snaps}, nil
}

func (s *raftStores) Close() error { return errors.Join(s.wal.Close(), s.meta.Close()) }

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
