package frame

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Write writes b as one frame: a uvarint length, then the bytes, in one
// Write call.
func Write(w io.Writer, b []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, len(b)+binary.MaxVarintLen64), uint64(len(b)))
	_, err := w.Write(append(buf, b...))
	return err
}

// Read reads one frame of at most max bytes; the length is checked against
// max before anything is allocated.
func Read(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes (limit %d)", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
