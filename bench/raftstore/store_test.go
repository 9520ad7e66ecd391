package raftstore

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"
	wal "github.com/hashicorp/raft-wal"
)

// bench appends batches of batch entries to s, b.N times.
func bench(b *testing.B, s raft.LogStore, batch int) {
	data := make([]byte, 1100)
	b.SetBytes(int64(len(data) * batch))
	idx := uint64(1)
	for i := 0; i < b.N; i++ {
		logs := make([]*raft.Log, batch)
		for j := range logs {
			logs[j] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
			idx++
		}
		if err := s.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("wal/batch=%d", batch), func(b *testing.B) {
			dir := b.TempDir()
			w, err := wal.Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			bench(b, w, batch)
		})
		b.Run(fmt.Sprintf("boltdb/batch=%d", batch), func(b *testing.B) {
			s, err := raftboltdb.NewBoltStore(filepath.Join(b.TempDir(), "raft.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			bench(b, s, batch)
		})
	}
}
