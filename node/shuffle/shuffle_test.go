package shuffle

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestSplitSmall(t *testing.T) {
	got := make([]byte, 5)
	Split(got, []byte{0, 1, 2, 3, 4})
	if want := []byte{0, 2, 1, 3, 4}; !bytes.Equal(got, want) {
		t.Fatalf("Split(0 1 2 3 4) = %v, want %v", got, want)
	}
}

// TestSplitJoin checks Split against its definition at lengths around the
// 16-byte steps of its word loop, and that Join restores the input.
func TestSplitJoin(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 1000, 4097, 1<<16 - 1, 1 << 16} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		var want []byte
		for i := 0; i+1 < n; i += 2 {
			want = append(want, src[i])
		}
		for i := 1; i < n; i += 2 {
			want = append(want, src[i])
		}
		if n%2 == 1 {
			want = append(want, src[n-1])
		}
		got := make([]byte, n)
		Split(got, src)
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d: Split differs from its definition", n)
		}
		back := make([]byte, n)
		Join(back, got)
		if !bytes.Equal(back, src) {
			t.Fatalf("n=%d: Join does not restore the input", n)
		}
	}
}
