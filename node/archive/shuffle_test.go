package archive

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// naiveShuffle is the definition shuffle implements.
func naiveShuffle(src []byte) []byte {
	var out []byte
	for off := 0; off < len(src); off += shuffleSegment {
		s := src[off:min(off+shuffleSegment, len(src))]
		var lo, hi []byte
		for i := 0; i+1 < len(s); i += 2 {
			lo, hi = append(lo, s[i]), append(hi, s[i+1])
		}
		out = append(append(out, lo...), hi...)
		if len(s)%2 == 1 {
			out = append(out, s[len(s)-1])
		}
	}
	return out
}

func TestShuffle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 15, 16, 17, 31, 33, 1000, 4097, shuffleSegment - 1, shuffleSegment, shuffleSegment + 1, 2*shuffleSegment + 7} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		got := make([]byte, n)
		shuffle(got, src)
		if want := naiveShuffle(src); !bytes.Equal(got, want) {
			t.Fatalf("n=%d: shuffle differs from its definition", n)
		}
		back := make([]byte, n)
		for off := 0; off < n; off += shuffleSegment {
			end := min(off+shuffleSegment, n)
			unshuffle(back[off:end], got[off:end])
		}
		if !bytes.Equal(back, src) {
			t.Fatalf("n=%d: unshuffle does not restore the input", n)
		}
	}
}
