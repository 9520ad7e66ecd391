package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

// TestBlocksRoundTrip: what a blockWriter is given, in pieces of any size,
// readBlocks returns, at every length around the block boundaries.
func TestBlocksRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 3, 1000, spoolBlock - 1, spoolBlock, spoolBlock + 1, 3*spoolBlock + 5} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		var out bytes.Buffer
		w := newBlockWriter(&out)
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(3*spoolBlock/2))
			if m, err := w.Write(rest[:k]); err != nil || m != k {
				t.Fatalf("n=%d: Write = %d, %v", n, m, err)
			}
			rest = rest[k:]
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		w.release()
		got, err := readBlocks(out.Bytes())
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("n=%d: %d bytes read back differ", n, len(got))
		}
		if blocks := (n + spoolBlock - 1) / spoolBlock; n > 0 && out.Len() < 4*blocks {
			t.Fatalf("n=%d: %d bytes for %d blocks", n, out.Len(), blocks)
		}
	}
}

// TestBlocksCompressCT: a CT slice is spooled in well under its size.
func TestBlocksCompressCT(t *testing.T) {
	_, st := synthStudy(t, "ct", nil)
	data, err := os.ReadFile(st.Files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := newBlockWriter(&out)
	w.Write(data)
	w.Flush()
	w.release()
	ratio := float64(out.Len()) / float64(len(data))
	t.Logf("a CT slice of %d bytes spooled in %d (%.2f)", len(data), out.Len(), ratio)
	if ratio > 0.7 {
		t.Fatalf("a CT slice of %d bytes is spooled in %d (%.2f)", len(data), out.Len(), ratio)
	}
	if got, err := readBlocks(out.Bytes()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the slice does not read back: %v", err)
	}
}

// TestBlocksRefused: a block list that a blockWriter did not write is an
// error, not a short or padded instance.
func TestBlocksRefused(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), spoolBlock/5)
	var out bytes.Buffer
	w := newBlockWriter(&out)
	w.Write(data)
	w.Flush()
	w.release()
	good := out.Bytes()
	block := func(z []byte) []byte {
		return binary.LittleEndian.AppendUint32(nil, uint32(len(z)))
	}
	tooBig := s2.Encode(nil, make([]byte, spoolBlock+1))
	// The first block's decoded length, a varint after the block's own
	// length, told one byte short of its 64 KiB.
	mislength := bytes.Clone(good)
	copy(mislength[4:], binary.AppendUvarint(nil, spoolBlock-1))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"cut in the last block", good[:len(good)-1]},
		{"cut in a length", append(bytes.Clone(good), 1, 0)},
		{"a length past the end", append(bytes.Clone(good), 0xff, 0xff, 0xff, 0x7f, 1)},
		{"an empty block", append(block(s2.Encode(nil, nil)), s2.Encode(nil, nil)...)},
		{"a block larger than spoolBlock", append(block(tooBig), tooBig...)},
		{"a block longer than it says", mislength},
	} {
		got, err := readBlocks(tc.b)
		if err == nil {
			t.Errorf("%s: read %d bytes, want an error", tc.name, len(got))
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestBlocksWriteError: a write error below reaches the caller, from Write
// when a block fills, and from every call after it.
func TestBlocksWriteError(t *testing.T) {
	w := newBlockWriter(failingWriter{})
	defer w.release()
	if _, err := w.Write(make([]byte, spoolBlock+1)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write of more than a block: %v", err)
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush after a failed Write did not report the error")
	}
}
