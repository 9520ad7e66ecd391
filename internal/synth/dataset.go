package synth

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// tag is a DICOM attribute tag, group in the high 16 bits.
type tag uint32

func (t tag) group() uint16   { return uint16(t >> 16) }
func (t tag) element() uint16 { return uint16(t) }

// elem is one data element of an explicit VR little endian dataset.
type elem struct {
	tag tag
	vr  string
	val []byte
}

// dataset collects elements in any order; encode writes them sorted by tag,
// as Part 5 requires.
type dataset []elem

// longVR holds the VRs that carry a 2-byte reserved field and a 32-bit
// length in explicit VR encoding (PS3.5 section 7.1.2).
var longVR = map[string]bool{
	"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true,
	"SQ": true, "SV": true, "UC": true, "UN": true, "UR": true, "UT": true, "UV": true,
}

// str adds a string element, padded to even length: UI with NUL, every other
// string VR with a space. An empty value writes a zero-length element (how a
// Type 2 attribute says "unknown").
func (d *dataset) str(t tag, vr, v string) {
	b := []byte(v)
	if len(b)%2 == 1 {
		if vr == "UI" {
			b = append(b, 0)
		} else {
			b = append(b, ' ')
		}
	}
	*d = append(*d, elem{t, vr, b})
}

// us adds an unsigned short.
func (d *dataset) us(t tag, v uint16) {
	*d = append(*d, elem{t, "US", binary.LittleEndian.AppendUint16(nil, v)})
}

// raw adds an element whose value is already encoded.
func (d *dataset) raw(t tag, vr string, v []byte) {
	*d = append(*d, elem{t, vr, v})
}

// size is the number of bytes encode appends.
func (d dataset) size() int {
	n := 0
	for _, e := range d {
		n += headerLen(e.vr) + len(e.val)
	}
	return n
}

func headerLen(vr string) int {
	if longVR[vr] {
		return 12
	}
	return 8
}

// encode appends the elements sorted by tag. A duplicate tag or a value too
// long for its VR is a programmer error (Spec.Validate bounds every value a
// caller controls) and panics.
func (d dataset) encode(dst []byte) []byte {
	s := slices.Clone(d)
	slices.SortStableFunc(s, func(a, b elem) int { return int(int64(a.tag) - int64(b.tag)) })
	for i, e := range s {
		if i > 0 && s[i-1].tag == e.tag {
			panic(fmt.Sprintf("synth: duplicate element %08x", uint32(e.tag)))
		}
		dst = appendHeader(dst, e.tag, e.vr, len(e.val))
		dst = append(dst, e.val...)
	}
	return dst
}

// appendHeader appends an element header declaring n value bytes.
func appendHeader(dst []byte, t tag, vr string, n int) []byte {
	if len(vr) != 2 || n%2 != 0 {
		panic(fmt.Sprintf("synth: element %08x: bad VR %q or odd length %d", uint32(t), vr, n))
	}
	dst = binary.LittleEndian.AppendUint16(dst, t.group())
	dst = binary.LittleEndian.AppendUint16(dst, t.element())
	dst = append(dst, vr...)
	if longVR[vr] {
		if int64(n) >= 0xFFFFFFFF {
			panic(fmt.Sprintf("synth: element %08x: %d bytes", uint32(t), n))
		}
		dst = append(dst, 0, 0)
		return binary.LittleEndian.AppendUint32(dst, uint32(n))
	}
	if n > 0xFFFF {
		panic(fmt.Sprintf("synth: element %08x: %d bytes for VR %s", uint32(t), n, vr))
	}
	return binary.LittleEndian.AppendUint16(dst, uint16(n))
}
