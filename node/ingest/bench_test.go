package ingest

import (
	"testing"

	"github.com/dicomesh/dicomesh/internal/synth"
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
