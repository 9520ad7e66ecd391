// Package raftstore measures the Raft log stores the registry could use:
// raft-wal, which it uses, against raft-boltdb, each appending 1.1 KiB
// entries (the size of a signed manifest) with fsync, one at a time and 64
// at a time. It is a module of its own so that the node does not depend on
// raft-boltdb:
//
//	cd bench/raftstore && go test -run X -bench StoreLogs -benchtime 3s
package raftstore
