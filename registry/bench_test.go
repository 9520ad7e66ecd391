package registry

import (
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
)

// BenchmarkLookup: lookups of one patient's tokens on a replica holding n
// manifests (DICOMESH_LOOKUP_MANIFESTS, default 100,000), each with three
// tokens. Reports p50 and p99 in microseconds and the replica's memory per
// manifest.
func BenchmarkLookup(b *testing.B) {
	n := 100_000
	if s := os.Getenv("DICOMESH_LOOKUP_MANIFESTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	w := newWorld(b)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	at := t0.Add(time.Minute)
	tokens := make([][]crypto.Token, n)
	loc := make([]byte, 512)
	for i := range n {
		ts := make([]crypto.Token, 3)
		for k := range ts {
			ts[k].Kind = crypto.TokenKind(k + 1)
			rand.Read(ts[k].Sum[:])
		}
		tokens[i] = ts
		m := &Manifest{ID: fmt.Sprintf("m%08d", i), Owner: w.a.fid, Version: 1, Tokens: ts, Root: "bafyroot", Bytes: 1, Locator: loc}
		if r := w.apply(w.a.sign(b, KindPublishManifest, m, at)); r.Code != OK {
			b.Fatal(r)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t := time.Now()
		if ms := w.f.Lookup(tokens[i%n][1:2]); len(ms) != 1 {
			b.Fatalf("%d matches", len(ms))
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/manifest")
}
