package frame

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	msgs := [][]byte{{}, []byte("one"), bytes.Repeat([]byte{7}, 300)}
	for _, m := range msgs {
		if err := Write(&b, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&b)
	for _, m := range msgs {
		got, err := Read(r, 1000)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("Read = %q, %v; want %q", got, err, m)
		}
	}
	if _, err := Read(r, 1000); err != io.EOF {
		t.Errorf("Read after the last frame: %v, want EOF", err)
	}
}

func TestLimits(t *testing.T) {
	// A declared length over the limit is refused before anything is read.
	huge := binary.AppendUvarint(nil, 1<<40)
	if _, err := Read(bufio.NewReader(bytes.NewReader(huge)), 1<<20); err == nil {
		t.Error("a frame declaring 1 TiB was accepted")
	}
	// A frame cut short is an error, not a short message.
	var b bytes.Buffer
	Write(&b, []byte("complete message"))
	cut := b.Bytes()[:b.Len()-3]
	if _, err := Read(bufio.NewReader(bytes.NewReader(cut)), 100); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated frame: %v, want unexpected EOF", err)
	}
}
