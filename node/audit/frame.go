package audit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// File headers. Each file starts with its magic line, so that a file of one
// kind is never read as another.
const (
	logMagic        = "dicomesh audit log v1\n"
	checkpointMagic = "dicomesh audit checkpoints v1\n"
	leavesMagic     = "dicomesh audit leaves v1\n"
)

// A frame is a 4-byte big-endian payload length, the payload, and a CRC-32C
// of the length and payload, big-endian.
const frameOverhead = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends payload as a frame to b.
func appendFrame(b, payload []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

type frameStatus int

const (
	frameOK    frameStatus = iota
	frameShort             // the bytes end inside the frame
	frameBad               // a length no writer produces, or a checksum mismatch
)

// parseFrame reads the frame at the start of b. On frameOK it returns the
// payload (a sub-slice of b) and the frame's total size.
func parseFrame(b []byte) (payload []byte, size int, st frameStatus, why string) {
	if len(b) < 4 {
		return nil, 0, frameShort, "incomplete frame header"
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > MaxRecordSize {
		return nil, 0, frameBad, fmt.Sprintf("frame length %d is outside 1..%d", n, MaxRecordSize)
	}
	size = frameOverhead + int(n)
	if len(b) < size {
		return nil, 0, frameShort, fmt.Sprintf("frame of %d bytes cut off after %d", size, len(b))
	}
	sum := binary.BigEndian.Uint32(b[size-4:])
	if crc32.Checksum(b[:size-4], castagnoli) != sum {
		return nil, 0, frameBad, "frame checksum mismatch"
	}
	return b[4 : size-4], size, frameOK, ""
}

// tail describes what follows the last good frame of a file.
type tail struct {
	Offset int64  // where the last good frame ends
	Bytes  int64  // bytes after it
	Torn   bool   // they are an unacknowledged, incomplete write
	Why    string // why the first frame there is not good
}

// classifyTail decides whether rest, the bytes after the last good frame up
// to the end of the file, is crash damage or corruption.
//
// Append writes a frame with one write and acknowledges it only after fsync,
// so a crash can leave behind only the frame being written: a prefix of it
// (the file ends inside the frame) or, after a power loss on some file
// systems, a zero-filled extension. Such a tail is torn: it was never
// acknowledged and may be cut off. Anything else, notably a complete frame
// whose checksum fails or whose length is impossible, was acknowledged or
// was never written by this package: that is corruption or tampering, and
// it is never repaired.
func classifyTail(rest []byte, st frameStatus, why string) (torn bool, reason string) {
	if allZero(rest) {
		return true, "zero-filled tail"
	}
	if st == frameShort {
		return true, why
	}
	return false, why
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// errStop ends a scan early without error.
var errStop = errors.New("stop")

// scanFrames reads the frames of r, which is positioned at byte offset start
// of its file, up to the end, calling fn for each good one (payload is valid
// only during the call). It returns the tail after the last good frame. fn
// may return errStop to end the scan; other errors are returned.
func scanFrames(r io.Reader, start int64, fn func(off int64, payload []byte) error) (tail, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	off := start
	bad := func(st frameStatus, why string) (tail, error) {
		rest, err := io.ReadAll(br) // Peek did not consume: this starts at off
		if err != nil {
			return tail{}, err
		}
		torn, reason := classifyTail(rest, st, why)
		return tail{Offset: off, Bytes: int64(len(rest)), Torn: torn, Why: reason}, nil
	}
	for {
		hdr, err := br.Peek(4)
		if len(hdr) == 0 && err == io.EOF {
			return tail{Offset: off}, nil
		}
		if err != nil && err != io.EOF {
			return tail{}, err
		}
		want := 4
		if len(hdr) == 4 {
			if n := binary.BigEndian.Uint32(hdr); n > 0 && n <= MaxRecordSize {
				want = frameOverhead + int(n)
			}
		}
		fr, err := br.Peek(want)
		if err != nil && err != io.EOF {
			return tail{}, err
		}
		p, size, st, why := parseFrame(fr)
		if st != frameOK {
			return bad(st, why)
		}
		if err := fn(off, p); err != nil {
			if errors.Is(err, errStop) {
				return tail{Offset: off + int64(size)}, nil
			}
			return tail{}, err
		}
		if _, err := br.Discard(size); err != nil {
			return tail{}, err
		}
		off += int64(size)
	}
}

// scanBytes is scanFrames over a byte slice that starts at offset start of
// its file; payloads are sub-slices of b.
func scanBytes(b []byte, start int64, fn func(off int64, payload []byte) error) (tail, error) {
	off := 0
	for off < len(b) {
		p, size, st, why := parseFrame(b[off:])
		if st != frameOK {
			torn, reason := classifyTail(b[off:], st, why)
			return tail{Offset: start + int64(off), Bytes: int64(len(b) - off), Torn: torn, Why: reason}, nil
		}
		if err := fn(start+int64(off), p); err != nil {
			if errors.Is(err, errStop) {
				return tail{Offset: start + int64(off+size)}, nil
			}
			return tail{}, err
		}
		off += size
	}
	return tail{Offset: start + int64(off)}, nil
}

// checkMagic reports whether b starts with magic.
func checkMagic(b []byte, magic string) bool { return bytes.HasPrefix(b, []byte(magic)) }
