package ingest

import (
	"encoding/binary"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// Limits of the pre-scan; see the package documentation.
const (
	// MaxDepth is how deep sequences may nest.
	MaxDepth = 16
	// MaxElements bounds the elements, items and fragments of one file.
	MaxElements = 1 << 20
	// MaxNumericBytes bounds the binary numeric values (US, SS, UL, SL, AT,
	// FL, FD) the parser decodes from one file: it widens each number to
	// eight bytes, so these values cost up to four times their size.
	MaxNumericBytes = 16 << 20
)

const (
	tsDeflated = "1.2.840.10008.1.2.1.99"
	// mediaDirectory is the Media Storage SOP Class of a DICOMDIR.
	mediaDirectory = "1.2.840.10008.1.3.10"

	undefinedLength = 0xFFFFFFFF
	metaStart       = 132 // preamble and "DICM"
	// lastParsedGroup is the last top-level group handed to the parser:
	// everything Parse extracts lives in groups 0002 to 0020.
	lastParsedGroup = 0x0020
)

// layout is what the pre-scan learned of a file.
type layout struct {
	ts    string // transfer syntax UID from the file meta
	class string // media storage SOP class UID from the file meta
	sop   string // media storage SOP instance UID from the file meta
	// parse is what the parser reads: the file meta and the public
	// top-level elements up to group lastParsedGroup. Pixel data lies beyond;
	// private elements, whose encoding the parser gets wrong more often than
	// not, are left out. It is a prefix of the file unless something was
	// left out in between.
	parse []byte
	// body is where the dataset starts, after the file meta; order and
	// implicit are its encoding.
	body     int
	order    binary.ByteOrder
	implicit bool
}

// isPart10 reports whether data carries the Part 10 preamble and magic.
func isPart10(data []byte) bool {
	return len(data) >= metaStart && string(data[128:metaStart]) == "DICM"
}

// guard checks the structure of a Part 10 file without allocating in
// proportion to anything the file declares. It reads the file the way the
// parser (github.com/suyashkumar/dicom) will, so that every length the parser
// acts on has been checked against the bytes that are really there, and
// stricter than the standard where the parser would go astray.
func guard(data []byte) (layout, error) {
	var l layout
	if !isPart10(data) {
		if len(data) >= 8 && string(data[:4]) == "DICM" {
			return l, reject(ErrNoFileMeta, "DICM magic at offset 0, without the 128-byte preamble")
		}
		if plausibleDataset(data) {
			return l, reject(ErrNoFileMeta, "no DICM magic at offset 128")
		}
		return l, reject(ErrNotDICOM, "no DICM magic at offset 128")
	}
	end := len(data)
	meta := &scanner{b: data, order: binary.LittleEndian, parsed: true}
	p := metaStart
	var metaEnd int
	var elems []elem // file meta elements, at most a handful are kept
	visit := func(e elem) error {
		if e.tag.Group != 0x0002 {
			return reject(ErrMalformed, "file meta group length covers element %s at offset %d", e.tag, e.off)
		}
		if len(elems) < 64 {
			elems = append(elems, e)
		}
		return nil
	}
	if end-p >= 12 && binary.LittleEndian.Uint16(data[p:]) == 0x0002 && binary.LittleEndian.Uint16(data[p+2:]) == 0x0000 {
		// (0002,0000) File Meta Information Group Length: the parser reads
		// exactly that many bytes as file meta, so it must be exact.
		if string(data[p+4:p+6]) != "UL" || binary.LittleEndian.Uint16(data[p+6:]) != 4 {
			return l, reject(ErrMalformed, "file meta group length is not a 4-byte UL")
		}
		n := binary.LittleEndian.Uint32(data[p+8:])
		p += 12
		if int64(n) > int64(end-p) {
			return l, reject(ErrMalformed, "file meta group length %d overruns the file", n)
		}
		metaEnd = p + int(n)
		for p < metaEnd {
			e, err := meta.element(p, metaEnd, 0)
			if err != nil {
				return l, metaErr(err)
			}
			if err := visit(e); err != nil {
				return l, err
			}
			p = e.next
		}
	} else {
		for end-p >= 2 && binary.LittleEndian.Uint16(data[p:]) == 0x0002 {
			e, err := meta.element(p, end, 0)
			if err != nil {
				return l, metaErr(err)
			}
			visit(e)
			p = e.next
		}
		metaEnd = p
	}
	for _, e := range elems {
		if e.vlen < 0 {
			continue
		}
		v := strings.Trim(string(data[e.vstart:e.vstart+e.vlen]), " \x00")
		switch e.tag {
		case tag.TransferSyntaxUID:
			if l.ts == "" {
				if e.vr != "UI" {
					return l, reject(ErrMalformed, "transfer syntax UID has VR %s", e.vr)
				}
				l.ts = v
			}
		case tag.MediaStorageSOPClassUID:
			l.class = v
		case tag.MediaStorageSOPInstanceUID:
			l.sop = v
		}
	}
	if l.ts == "" {
		return l, reject(ErrMalformed, "file meta has no transfer syntax UID")
	}
	if err := validUID(l.ts); err != nil {
		return l, reject(ErrInvalidUID, "transfer syntax UID: %s", err)
	}
	if l.ts == tsDeflated {
		return l, reject(ErrUnsupported, "deflated transfer syntax %s", l.ts)
	}
	// The parser reads any transfer syntax it does not know as explicit VR
	// big endian, so an unknown one is refused here.
	if _, err := uid.CanonicalTransferSyntaxUID(l.ts); err != nil {
		return l, reject(ErrUnsupported, "transfer syntax %s is not known to the parser", l.ts)
	}
	order, implicit, err := uid.ParseTransferSyntaxUID(l.ts)
	if err != nil {
		return l, reject(ErrUnsupported, "transfer syntax %s: %v", l.ts, err)
	}
	if metaEnd == end {
		return l, reject(ErrMalformed, "no dataset after the file meta")
	}
	l.body, l.order, l.implicit = metaEnd, order, implicit
	s := &scanner{b: data, order: order, implicit: implicit, elements: meta.elements, numericBytes: meta.numericBytes}
	// spans are the parts of data handed to the parser, adjacent ones merged.
	spans := [][2]int{{0, metaEnd}}
	for p := metaEnd; p < end; {
		s.parsed = s.forParser(p, end)
		e, err := s.element(p, end, 0)
		if err != nil {
			return l, err
		}
		// The parser panics on a Specific Character Set that is not text.
		if e.tag == tag.SpecificCharacterSet {
			switch tag.GetVRKind(e.tag, e.vr) {
			case tag.VRStringList, tag.VRString, tag.VRDate:
			default:
				return l, reject(ErrMalformed, "specific character set has VR %s", e.vr)
			}
		}
		if s.parsed {
			if last := &spans[len(spans)-1]; last[1] == p {
				last[1] = e.next
			} else {
				spans = append(spans, [2]int{p, e.next})
			}
		}
		p = e.next
	}
	if len(spans) == 1 {
		l.parse = data[:spans[0][1]]
	} else {
		n := 0
		for _, sp := range spans {
			n += sp[1] - sp[0]
		}
		l.parse = make([]byte, 0, n)
		for _, sp := range spans {
			l.parse = append(l.parse, data[sp[0]:sp[1]]...)
		}
	}
	return l, nil
}

func metaErr(err error) error {
	if re, ok := err.(*RejectError); ok {
		c := *re
		c.Reason = "file meta: " + c.Reason
		return &c
	}
	return err
}

// plausibleDataset reports whether data could be a raw DICOM dataset (no
// Part 10 header): it starts with a group 0002 or 0008 element whose VR or
// length makes sense.
func plausibleDataset(data []byte) bool {
	if len(data) < 8 {
		return false
	}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		g, e := order.Uint16(data), order.Uint16(data[2:])
		if (g != 0x0002 && g != 0x0008) || e > 0x1200 {
			continue
		}
		if _, ok := vrs[string(data[4:6])]; ok {
			return true
		}
		if n := order.Uint32(data[4:]); int64(n) <= int64(len(data)-8) {
			return true
		}
	}
	return false
}

// Explicit VRs the parser reads, true for those with a 4-byte length. The
// parser reads OV, SV and UV with a 2-byte length, against the standard;
// those are refused as unsupported.
var vrs = map[string]bool{
	"AE": false, "AS": false, "AT": false, "CS": false, "DA": false, "DS": false,
	"DT": false, "FD": false, "FL": false, "IS": false, "LO": false, "LT": false,
	"PN": false, "SH": false, "SL": false, "SS": false, "ST": false, "TM": false,
	"UI": false, "UL": false, "US": false,
	"OB": true, "OD": true, "OF": true, "OL": true, "OW": true, "SQ": true,
	"UC": true, "UN": true, "UR": true, "UT": true,
}

// scanner walks a dataset, checking every length against the bytes left.
type scanner struct {
	b        []byte
	order    binary.ByteOrder
	implicit bool
	elements int
	// parsed says whether the parser will read what is being walked: then
	// the walk follows the parser where it departs from the standard, and
	// numeric values count against MaxNumericBytes.
	parsed       bool
	numericBytes int64
}

// forParser reports whether the top-level element at p goes to the parser:
// a public element of group lastParsedGroup or lower, unless it is UN of
// undefined length in an explicit VR dataset (the parser would read its
// content, implicit VR by the standard, as explicit).
func (s *scanner) forParser(p, end int) bool {
	if end-p < 12 {
		return true // let the walk report it
	}
	group := s.order.Uint16(s.b[p:])
	if group > lastParsedGroup || group%2 == 1 {
		return false
	}
	return s.implicit || string(s.b[p+4:p+6]) != "UN" || s.order.Uint32(s.b[p+8:]) != undefinedLength
}

// elem is one element the scanner walked.
type elem struct {
	tag    tag.Tag
	vr     string
	off    int // where the element starts
	vstart int // where its value starts
	vlen   int // its defined length, -1 if undefined
	next   int // where the next element starts
}

func (s *scanner) count(p int) error {
	s.elements++
	if s.elements > MaxElements {
		return reject(ErrTooLarge, "more than %d elements (offset %d)", MaxElements, p)
	}
	return nil
}

// implicitVR is the VR the parser assumes for t in an implicit VR dataset.
func implicitVR(t tag.Tag) string {
	if info, err := tag.Find(t); err == nil {
		if info.Tag == tag.PixelData || info.Tag == tag.OverlayData {
			return "OW"
		}
		return info.VRs[0]
	}
	return tag.UnknownVR
}

// element checks the element at p, which must end by end, and what it nests.
func (s *scanner) element(p, end, depth int) (elem, error) {
	e := elem{off: p, vlen: -1}
	if err := s.count(p); err != nil {
		return e, err
	}
	if end-p < 8 {
		return e, reject(ErrMalformed, "truncated element header at offset %d", p)
	}
	e.tag = tag.Tag{Group: s.order.Uint16(s.b[p:]), Element: s.order.Uint16(s.b[p+2:])}
	if e.tag.Group == 0xFFFE {
		return e, reject(ErrMalformed, "item tag %s outside a sequence at offset %d", e.tag, p)
	}
	var length uint32
	if s.implicit {
		e.vr = implicitVR(e.tag)
		length, e.vstart = s.order.Uint32(s.b[p+4:]), p+8
	} else {
		e.vr = string(s.b[p+4 : p+6])
		long, ok := vrs[e.vr]
		switch {
		case !ok && (e.vr == "OV" || e.vr == "SV" || e.vr == "UV"):
			return e, reject(ErrUnsupported, "element %s at offset %d has VR %s", e.tag, p, e.vr)
		case !ok:
			return e, reject(ErrMalformed, "element %s at offset %d has invalid VR %q", e.tag, p, e.vr)
		case long:
			if end-p < 12 {
				return e, reject(ErrMalformed, "truncated element header at offset %d", p)
			}
			length, e.vstart = s.order.Uint32(s.b[p+8:]), p+12
		default:
			length, e.vstart = uint32(s.order.Uint16(s.b[p+6:])), p+8
			if length == 0xFFFF { // the parser reads this as undefined
				length = undefinedLength
			}
		}
	}
	kind := tag.GetVRKind(e.tag, e.vr)
	if length == undefinedLength {
		var err error
		switch kind {
		case tag.VRPixelData:
			e.next, err = s.fragments(e.vstart, end)
		case tag.VRUnknown:
			e.next, err = s.unknownSequence(e, end, depth+1)
		case tag.VRSequence:
			e.next, err = s.sequence(e.vstart, end, -1, depth+1)
		default:
			return e, reject(ErrMalformed, "element %s at offset %d has VR %s and undefined length", e.tag, p, e.vr)
		}
		return e, err
	}
	if int64(length) > int64(end-e.vstart) {
		return e, reject(ErrMalformed, "element %s at offset %d declares %d bytes but only %d remain", e.tag, p, length, end-e.vstart)
	}
	e.vlen = int(length)
	e.next = e.vstart + e.vlen
	switch kind {
	case tag.VRSequence:
		if _, err := s.sequence(e.vstart, e.next, e.next, depth+1); err != nil {
			return e, err
		}
	case tag.VRUInt16List, tag.VRUInt32List, tag.VRInt16List, tag.VRInt32List, tag.VRTagList,
		tag.VRFloat32List, tag.VRFloat64List:
		if s.parsed {
			s.numericBytes += int64(length)
			if s.numericBytes > MaxNumericBytes {
				return e, reject(ErrTooLarge, "more than %d bytes of numeric values (element %s at offset %d)", MaxNumericBytes, e.tag, p)
			}
		}
	}
	return e, nil
}

// unknownSequence walks the content of a UN element of undefined length: a
// sequence in implicit VR little endian, says the standard, but the parser
// reads it in the dataset's encoding. Where the parser will not read it, it
// is walked as the standard says; where it will, as the parser does.
func (s *scanner) unknownSequence(e elem, end, depth int) (int, error) {
	if s.implicit && s.order == binary.LittleEndian {
		return s.sequence(e.vstart, end, -1, depth)
	}
	if s.parsed {
		next, err := s.sequence(e.vstart, end, -1, depth)
		if err != nil {
			std := *s
			std.implicit, std.order = true, binary.LittleEndian
			if _, serr := std.sequence(e.vstart, end, -1, depth); serr == nil {
				return 0, reject(ErrUnsupported, "element %s at offset %d: the parser cannot read implicit VR inside UN of undefined length", e.tag, e.off)
			}
		}
		return next, err
	}
	order, implicit := s.order, s.implicit
	s.order, s.implicit = binary.LittleEndian, true
	defer func() { s.order, s.implicit = order, implicit }()
	return s.sequence(e.vstart, end, -1, depth)
}

// item reads the item or delimiter header at p: (FFFE,eeee) and a 4-byte
// length.
func (s *scanner) item(p, end int) (el uint16, length uint32, err error) {
	if err := s.count(p); err != nil {
		return 0, 0, err
	}
	if end-p < 8 {
		return 0, 0, reject(ErrMalformed, "truncated item at offset %d", p)
	}
	if s.order.Uint16(s.b[p:]) != 0xFFFE {
		return 0, 0, reject(ErrMalformed, "expected an item at offset %d", p)
	}
	return s.order.Uint16(s.b[p+2:]), s.order.Uint32(s.b[p+4:]), nil
}

// sequence walks the items of a sequence starting at p. With fixedEnd >= 0
// the sequence has that defined end; otherwise it ends with a sequence
// delimiter before end.
func (s *scanner) sequence(p, end, fixedEnd, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, reject(ErrTooLarge, "sequences nested deeper than %d (offset %d)", MaxDepth, p)
	}
	for {
		if fixedEnd >= 0 && p == fixedEnd {
			return p, nil
		}
		el, length, err := s.item(p, end)
		if err != nil {
			return 0, err
		}
		switch {
		case el == 0xE0DD && fixedEnd < 0:
			if length != 0 {
				return 0, reject(ErrMalformed, "sequence delimiter with length %d at offset %d", length, p)
			}
			return p + 8, nil
		case el != 0xE000:
			return 0, reject(ErrMalformed, "unexpected (FFFE,%04X) in a sequence at offset %d", el, p)
		case length == undefinedLength:
			if p, err = s.openItem(p+8, end, depth); err != nil {
				return 0, err
			}
		default:
			if int64(length) > int64(end-p-8) {
				return 0, reject(ErrMalformed, "item at offset %d declares %d bytes but only %d remain", p, length, end-p-8)
			}
			for q, itemEnd := p+8, p+8+int(length); q < itemEnd; {
				e, err := s.element(q, itemEnd, depth)
				if err != nil {
					return 0, err
				}
				q = e.next
			}
			p += 8 + int(length)
		}
	}
}

// openItem walks the elements of an item of undefined length up to its item
// delimiter and returns where the delimiter ends.
func (s *scanner) openItem(p, end, depth int) (int, error) {
	for {
		if end-p >= 4 && s.order.Uint16(s.b[p:]) == 0xFFFE {
			el, length, err := s.item(p, end)
			if err != nil {
				return 0, err
			}
			if el != 0xE00D || length != 0 {
				return 0, reject(ErrMalformed, "expected an item delimiter at offset %d", p)
			}
			return p + 8, nil
		}
		if p >= end {
			return 0, reject(ErrMalformed, "item without a delimiter")
		}
		e, err := s.element(p, end, depth)
		if err != nil {
			return 0, err
		}
		p = e.next
	}
}

// fragments walks encapsulated pixel data: a basic offset table item, then
// fragments, all of defined length, then a sequence delimiter.
func (s *scanner) fragments(p, end int) (int, error) {
	for first := true; ; first = false {
		el, length, err := s.item(p, end)
		if err != nil {
			return 0, err
		}
		switch {
		case el == 0xE0DD && !first && length == 0:
			return p + 8, nil
		case el == 0xE000 && length != undefinedLength && int64(length) <= int64(end-p-8):
			p += 8 + int(length)
		default:
			return 0, reject(ErrMalformed, "bad pixel data fragment at offset %d", p)
		}
	}
}
