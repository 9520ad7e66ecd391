package ingest

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/archive"
)

func benchParse(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCTSlice parses one 512x512 synthetic CT slice.
func BenchmarkParseCTSlice(b *testing.B) {
	spec, _ := synth.DefaultSpec("ct")
	spec.Slices = 1
	var data []byte
	synth.Instances(spec, func(_ string, d []byte) error { data = d; return nil })
	benchParse(b, data)
}

// BenchmarkParseMultiframe parses an instance with 64 MiB of native pixel
// data.
func BenchmarkParseMultiframe(b *testing.B) {
	i := ct(1)
	i.pixels = explicitLE.raw(nil, 0x7FE0, 0x0010, "OW", make([]byte, 64<<20))
	benchParse(b, i.bytes())
}

// BenchmarkRunCT ingests a generated 100-slice CT (about 52 MB) from disk
// into a fresh durable archive per iteration, as `dicomesh ingest` does.
func BenchmarkRunCT(b *testing.B) {
	spec, err := synth.DefaultSpec("ct")
	if err != nil {
		b.Fatal(err)
	}
	spec.Slices = 100
	dir := b.TempDir()
	st, err := synth.Write(dir, spec)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, f := range st.Files {
		total += f.Size
	}
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		cfg := DefaultConfig()
		id, _ := crypto.GenerateIdentity(rand.Reader)
		a, err := archive.Open(archive.Config{Dir: b.TempDir(), Owner: id})
		if err != nil {
			b.Fatal(err)
		}
		cfg.Archive, cfg.QuarantineDir = a, b.TempDir()
		b.StartTimer()
		if rep, err := Run(context.Background(), cfg, dir); err != nil || rep.Stored != len(st.Files) {
			b.Fatalf("%+v %v", rep, err)
		}
		b.StopTimer()
		a.Close()
		b.StartTimer()
	}
}
