package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Limits of the pre-scan.
const (
	MaxDepth    = 16      // sequence nesting
	MaxElements = 1 << 20 // elements in one file, items included
)

// Sentinel errors; a Rejection's error wraps one of them.
var (
	ErrNotDICOM    = errors.New("not a DICOM Part 10 file")
	ErrMalformed   = errors.New("malformed DICOM")
	ErrTooLarge    = errors.New("too large")
	ErrUnsupported = errors.New("unsupported DICOM encoding")
	ErrInvalidUID  = errors.New("invalid UID")
	// ErrDirectory marks a DICOMDIR: an index of media, not an instance.
	ErrDirectory = errors.New("DICOMDIR media directory")
)

const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitBE = "1.2.840.10008.1.2.2"
	tsDeflated   = "1.2.840.10008.1.2.1.99"
	// mediaDirectory is the Media Storage SOP Class of a DICOMDIR.
	mediaDirectory = "1.2.840.10008.1.3.10"
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// isDICOM reports whether data carries the Part 10 preamble and magic.
func isDICOM(data []byte) bool {
	return len(data) >= 132 && string(data[128:132]) == "DICM"
}

// scanner walks a dataset without allocating, checking that it is well formed.
type scanner struct {
	b        []byte
	implicit bool
	order    binary.ByteOrder
	elements int
}

// Guard checks the structure of a Part 10 file and returns its transfer
// syntax UID. It never allocates in proportion to a declared length.
func Guard(data []byte) (ts string, err error) {
	if !isDICOM(data) {
		return "", ErrNotDICOM
	}
	meta := &scanner{b: data, order: binary.LittleEndian}
	p := 132
	for p+8 <= len(data) && binary.LittleEndian.Uint16(data[p:]) == 0x0002 {
		elem := binary.LittleEndian.Uint16(data[p+2:])
		next, vstart, vlen, err := meta.element(p, len(data), 0)
		if err != nil {
			return "", fmt.Errorf("file meta: %w", err)
		}
		if elem == 0x0010 {
			ts = strings.TrimRight(string(data[vstart:vstart+vlen]), "\x00 ")
		}
		p = next
	}
	if ts == "" {
		return "", malformed("file meta has no transfer syntax")
	}
	if err := validUID(ts); err != nil {
		return "", fmt.Errorf("transfer syntax: %w", err)
	}
	s := &scanner{b: data, order: binary.LittleEndian, elements: meta.elements}
	switch ts {
	case tsImplicitLE:
		s.implicit = true
	case tsExplicitBE:
		s.order = binary.BigEndian
	case tsDeflated:
		return "", fmt.Errorf("%w: deflated transfer syntax", ErrUnsupported)
	}
	if p == len(data) {
		return "", malformed("no dataset after the file meta")
	}
	if err := s.elements0(p, len(data), 0); err != nil {
		return "", err
	}
	return ts, nil
}

// elements0 walks elements from p to end.
func (s *scanner) elements0(p, end, depth int) error {
	for p < end {
		next, _, _, err := s.element(p, end, depth)
		if err != nil {
			return err
		}
		p = next
	}
	return nil
}

const undefined = 0xFFFFFFFF

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UR", "UT", "UN":
		return true
	}
	return false
}

// element checks the element at p and returns where the next one starts and
// where its value is (for defined lengths).
func (s *scanner) element(p, end, depth int) (next, vstart, vlen int, err error) {
	s.elements++
	if s.elements > MaxElements {
		return 0, 0, 0, fmt.Errorf("%w: more than %d elements", ErrTooLarge, MaxElements)
	}
	if end-p < 8 {
		return 0, 0, 0, malformed("truncated element header at offset %d", p)
	}
	group, elem := s.order.Uint16(s.b[p:]), s.order.Uint16(s.b[p+2:])
	if group == 0xFFFE {
		return 0, 0, 0, malformed("unexpected item tag (FFFE,%04X) at offset %d", elem, p)
	}
	vr := ""
	var length uint32
	explicit := !s.implicit || group == 0x0002
	order := s.order
	if group == 0x0002 {
		order = binary.LittleEndian
	}
	if explicit {
		vr = string(s.b[p+4 : p+6])
		if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
			return 0, 0, 0, malformed("invalid VR at offset %d", p)
		}
		if longVR(vr) {
			if end-p < 12 {
				return 0, 0, 0, malformed("truncated element header at offset %d", p)
			}
			length, vstart = order.Uint32(s.b[p+8:]), p+12
		} else {
			length, vstart = uint32(order.Uint16(s.b[p+6:])), p+8
		}
	} else {
		length, vstart = order.Uint32(s.b[p+4:]), p+8
	}
	if length == undefined {
		isPixel := group == 0x7FE0 && elem == 0x0010
		if explicit && vr != "SQ" && vr != "UN" && !(isPixel && (vr == "OB" || vr == "OW")) {
			return 0, 0, 0, malformed("undefined length on VR %s at offset %d", vr, p)
		}
		if isPixel {
			next, err = s.fragments(vstart, end)
		} else {
			next, err = s.sequence(vstart, end, -1, depth+1)
		}
		return next, 0, 0, err
	}
	if int64(length) > int64(end-vstart) {
		return 0, 0, 0, malformed("element (%04X,%04X) declares %d bytes but only %d remain", group, elem, length, end-vstart)
	}
	vlen = int(length)
	if vr == "SQ" {
		if _, err := s.sequence(vstart, vstart+vlen, vstart+vlen, depth+1); err != nil {
			return 0, 0, 0, err
		}
	}
	return vstart + vlen, vstart, vlen, nil
}

// itemHeader reads an item or delimiter tag and its 4-byte length.
func (s *scanner) itemHeader(p, end int) (elem uint16, length uint32, err error) {
	if end-p < 8 {
		return 0, 0, malformed("truncated item at offset %d", p)
	}
	if s.order.Uint16(s.b[p:]) != 0xFFFE {
		return 0, 0, malformed("expected an item at offset %d", p)
	}
	return s.order.Uint16(s.b[p+2:]), s.order.Uint32(s.b[p+4:]), nil
}

// sequence walks the items of a sequence from p. With fixedEnd >= 0 the
// sequence has a defined length ending there; otherwise it ends at a sequence
// delimiter.
func (s *scanner) sequence(p, end, fixedEnd, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, MaxDepth)
	}
	for {
		if fixedEnd >= 0 && p == fixedEnd {
			return p, nil
		}
		elem, length, err := s.itemHeader(p, end)
		if err != nil {
			return 0, err
		}
		s.elements++
		if s.elements > MaxElements {
			return 0, fmt.Errorf("%w: more than %d elements", ErrTooLarge, MaxElements)
		}
		p += 8
		switch elem {
		case 0xE0DD: // sequence delimiter
			if fixedEnd >= 0 {
				return 0, malformed("sequence delimiter in a sequence of defined length at offset %d", p-8)
			}
			return p, nil
		case 0xE000: // item
			if length == undefined {
				// Elements until the item delimiter.
				for {
					if end-p >= 8 && s.order.Uint16(s.b[p:]) == 0xFFFE {
						e, _, err := s.itemHeader(p, end)
						if err != nil {
							return 0, err
						}
						if e != 0xE00D {
							return 0, malformed("expected item delimiter at offset %d", p)
						}
						p += 8
						break
					}
					if p >= end {
						return 0, malformed("item without delimiter")
					}
					next, _, _, err := s.element(p, end, depth)
					if err != nil {
						return 0, err
					}
					p = next
				}
			} else {
				if int64(length) > int64(end-p) {
					return 0, malformed("item declares %d bytes but only %d remain", length, end-p)
				}
				if err := s.elements0(p, p+int(length), depth); err != nil {
					return 0, err
				}
				p += int(length)
			}
		default:
			return 0, malformed("unexpected (FFFE,%04X) in a sequence at offset %d", elem, p-8)
		}
	}
}

// fragments walks encapsulated pixel data: items of defined length up to a
// sequence delimiter.
func (s *scanner) fragments(p, end int) (int, error) {
	for {
		elem, length, err := s.itemHeader(p, end)
		if err != nil {
			return 0, err
		}
		s.elements++
		if s.elements > MaxElements {
			return 0, fmt.Errorf("%w: more than %d fragments", ErrTooLarge, MaxElements)
		}
		p += 8
		switch {
		case elem == 0xE0DD:
			return p, nil
		case elem == 0xE000 && length != undefined && int64(length) <= int64(end-p):
			p += int(length)
		default:
			return 0, malformed("bad pixel data fragment at offset %d", p-8)
		}
	}
}

// validUID checks a UID against PS3.5 9.1: 1 to 64 characters, components of
// digits separated by dots, no leading zero in a multi-digit component.
func validUID(u string) error {
	if u == "" || len(u) > 64 {
		return fmt.Errorf("%w: length %d", ErrInvalidUID, len(u))
	}
	for _, c := range strings.Split(u, ".") {
		if c == "" {
			return fmt.Errorf("%w: %q has an empty component", ErrInvalidUID, u)
		}
		if len(c) > 1 && c[0] == '0' {
			return fmt.Errorf("%w: %q has a leading zero", ErrInvalidUID, u)
		}
		for i := 0; i < len(c); i++ {
			if c[i] < '0' || c[i] > '9' {
				return fmt.Errorf("%w: %q is not digits and dots", ErrInvalidUID, u)
			}
		}
	}
	return nil
}
