package archive

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/dicomesh/dicomesh/node/shuffle"
)

// TestShuffleSegments: each segment is de-interleaved on its own, so that
// a reader restores one segment at a time.
func TestShuffleSegments(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 4097, shuffleSegment - 1, shuffleSegment, shuffleSegment + 1, 2*shuffleSegment + 7} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		got := make([]byte, n)
		shuffleSegments(got, src)
		back := make([]byte, n)
		for off := 0; off < n; off += shuffleSegment {
			end := min(off+shuffleSegment, n)
			seg := make([]byte, end-off)
			shuffle.Split(seg, src[off:end])
			if !bytes.Equal(got[off:end], seg) {
				t.Fatalf("n=%d: the segment at %d is not shuffled on its own", n, off)
			}
			shuffle.Join(back[off:end], got[off:end])
		}
		if !bytes.Equal(back, src) {
			t.Fatalf("n=%d: joining each segment does not restore the input", n)
		}
	}
}
