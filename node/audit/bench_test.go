package audit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the audit log; bench/audit.sh runs them and prints the
// figures. The search and open benchmarks use a log of
// DICOMESH_AUDIT_BENCH_RECORDS records (default 1,000,000) built once in
// DICOMESH_AUDIT_BENCH_DIR (default a directory under the system's
// temporary directory, kept for later runs).

// benchRecord is record i of a synthetic year of a facility's activity:
// 50,000 patients, 2,000 users in 20 facilities, one record every 30 s.
func benchRecord(i int) Record {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	r := Record{
		Time:     benchStart.Add(time.Duration(i) * 30 * time.Second),
		Event:    []Event{EventPatientRecord, EventQuery, EventInstancesAccessed, EventImport, EventExport}[rng.IntN(5)],
		Action:   ActionRead,
		User:     "user" + strconv.Itoa(rng.IntN(2000)),
		Facility: "fac-" + strconv.Itoa(rng.IntN(20)),
		Patient:  "HOSP|" + strconv.Itoa(rng.IntN(50000)),
		Study:    "1.2.826.0.1.3680043.2." + strconv.Itoa(rng.IntN(1<<30)),
		Purpose:  "TREAT",
	}
	if r.Event == EventQuery {
		r.Query = "patient_id=" + strconv.Itoa(rng.IntN(50000)) + " modality=CT"
	}
	return r
}

var benchStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func benchRecords() int {
	if s := os.Getenv("DICOMESH_AUDIT_BENCH_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n > 0 {
			return n
		}
	}
	return 1_000_000
}

var benchLogOnce sync.Once

// benchLog returns the configuration of a log holding benchRecords()
// records, building it the first time: records are written as Append
// writes them, with one sync at the end instead of one per record.
func benchLog(b *testing.B) Config {
	n := benchRecords()
	dir := os.Getenv("DICOMESH_AUDIT_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "dicomesh-audit-bench")
	}
	dir = filepath.Join(dir, strconv.Itoa(n))
	cfg := testConfig(b, dir)
	cfg.Now = time.Now
	benchLogOnce.Do(func() {
		l, err := Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		if have := int(l.Size()); have >= n {
			return
		} else if have > 0 {
			b.Fatalf("%s holds %d records, not %d: remove it", dir, have, n)
		}
		start := time.Now()
		for i := range n {
			r := benchRecord(i)
			payload, err := encodeRecord(&r)
			if err != nil {
				b.Fatal(err)
			}
			frame := appendFrame(make([]byte, 0, len(payload)+frameOverhead), payload)
			l.mu.Lock()
			_, err = l.writeLocked(frame, leafHash(payload))
			l.mu.Unlock()
			if err != nil {
				b.Fatal(err)
			}
		}
		if _, err := l.Checkpoint(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Logf("built a log of %d records in %s (%s)", n, dir, time.Since(start).Round(time.Millisecond))
	})
	return cfg
}

// BenchmarkAppendDurable appends records from 1, 8 and 64 goroutines, each
// Append returning once its record is fsynced (concurrent appends share an
// fsync). records/s is the figure.
func BenchmarkAppendDurable(b *testing.B) {
	for _, g := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("appenders=%d", g), func(b *testing.B) {
			cfg := testConfig(b, b.TempDir())
			cfg.Now = time.Now
			l := openLog(b, cfg)
			defer l.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range g {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1)); i <= b.N; i = int(next.Add(1)) {
						if _, err := l.Append(context.Background(), benchRecord(i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkFsyncAnchor is the anchor of BenchmarkAppendDurable: one
// goroutine writing a frame of the same size to a file and fsyncing it, as
// fast as the disk allows, with no log around it.
func BenchmarkFsyncAnchor(b *testing.B) {
	r := benchRecord(1)
	frame := appendFrame(nil, mustEncode(b, &r))
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(frame); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func mustEncode(b *testing.B, r *Record) []byte {
	p, err := encodeRecord(r)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkOpen opens the large log (leaves cache present) and reports the
// time and the heap it takes per record, then the same for the search
// index built on the first search.
func BenchmarkOpen(b *testing.B) {
	cfg := benchLog(b)
	n := float64(benchRecords())
	var opened, indexed time.Duration
	var heapOpen, heapIndex float64
	for range b.N {
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		l, err := Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		opened += time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		t1 := time.Now()
		if _, err := l.Search(context.Background(), reader, Query{Patient: "none", Limit: 1}); err != nil {
			b.Fatal(err)
		}
		indexed += time.Since(t1)
		runtime.GC()
		runtime.ReadMemStats(&m2)
		heapOpen += float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
		heapIndex += float64(m2.HeapAlloc) - float64(m1.HeapAlloc)
		runtime.KeepAlive(l)
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	k := float64(b.N)
	b.ReportMetric(opened.Seconds()/k, "open-s")
	b.ReportMetric(indexed.Seconds()/k, "index-s")
	b.ReportMetric(heapOpen/k/n, "open-B/record")
	b.ReportMetric(heapIndex/k/n, "index-B/record")
}

// BenchmarkSearch runs searches on the large log by patient (every record
// of one patient, about 20), by user (the newest 100 of about 500) and by
// date range (the first 100 of one day, about 2,900), each with random
// keys, and reports the 50th and 99th percentile latency. A search
// includes its own durable "Audit Log Used" record (one fsync), finding the
// records in the index, reading them from the file and checking each
// against the Merkle tree.
func BenchmarkSearch(b *testing.B) {
	cfg := benchLog(b)
	l := openLog(b, cfg)
	defer l.Close()
	// Build the index before timing.
	if _, err := l.Search(context.Background(), reader, Query{Patient: "none"}); err != nil {
		b.Fatal(err)
	}
	n := benchRecords()
	days := int(time.Duration(n) * 30 * time.Second / (24 * time.Hour))
	kinds := []struct {
		name  string
		query func(rng *rand.Rand) Query
	}{
		{"patient", func(rng *rand.Rand) Query { return Query{Patient: "HOSP|" + strconv.Itoa(rng.IntN(50000))} }},
		{"user", func(rng *rand.Rand) Query {
			return Query{User: "user" + strconv.Itoa(rng.IntN(2000)), Newest: true, Limit: 100}
		}},
		{"daterange", func(rng *rand.Rand) Query {
			since := benchStart.Add(time.Duration(rng.IntN(max(days, 1))) * 24 * time.Hour)
			return Query{Since: since, Until: since.Add(24 * time.Hour), Limit: 100}
		}},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			lat := make([]time.Duration, 0, b.N)
			found := 0
			for range b.N {
				q := k.query(rng)
				t0 := time.Now()
				rs, err := l.Search(context.Background(), reader, q)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				found += len(rs)
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(found)/float64(b.N), "records/search")
		})
	}
}
