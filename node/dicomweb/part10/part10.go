package part10

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Bounds of what Parse accepts.
const (
	maxDepth    = 16
	maxElements = 1 << 20

	pixelData = 0x7FE00010
	undefined = 0xFFFFFFFF
)

// The transfer syntaxes of native pixel data.
const (
	ImplicitVRLittleEndian = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
	ExplicitVRBigEndian    = "1.2.840.10008.1.2.2"
)

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("part10: malformed instance")

// Element is one data element. Tag is group<<16 | element. Value is a
// slice of the instance's bytes; a sequence has Items instead, and
// encapsulated pixel data Fragments (the first one is the basic offset
// table).
type Element struct {
	Tag       uint32
	VR        string
	Value     []byte
	Items     [][]Element
	Fragments [][]byte
}

// Instance is a Part 10 file split into its elements.
type Instance struct {
	TransferSyntax string
	Order          binary.ByteOrder
	Elements       []Element // the dataset, without the file meta
}

// Find returns the top-level element with tag t.
func (in *Instance) Find(t uint32) (Element, bool) {
	for _, e := range in.Elements {
		if e.Tag == t {
			return e, true
		}
	}
	return Element{}, false
}

// Str returns a text element's value, trimmed.
func (in *Instance) Str(t uint32) string {
	e, _ := in.Find(t)
	return strings.Trim(string(e.Value), " \x00")
}

// Num returns the first value of a numeric element: US, SS, UL, SL, IS or
// DS; def when absent or unreadable.
func (in *Instance) Num(t uint32, def float64) float64 {
	e, ok := in.Find(t)
	if !ok {
		return def
	}
	v := numbers(e, in.Order)
	if len(v) == 0 {
		return def
	}
	f, ok := v[0].(float64)
	if !ok {
		if i, isInt := v[0].(int64); isInt {
			return float64(i)
		}
		return def
	}
	return f
}

// Parse splits a Part 10 file into its elements.
func Parse(b []byte) (*Instance, error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, fmt.Errorf("%w: no DICM magic", ErrMalformed)
	}
	p := &parser{b: b, order: binary.LittleEndian}
	// The file meta is explicit VR little endian; it ends where group 0002
	// does.
	pos := 132
	in := &Instance{}
	for pos+4 <= len(b) && binary.LittleEndian.Uint16(b[pos:]) == 0x0002 {
		e, next, err := p.element(pos, len(b), 0)
		if err != nil {
			return nil, err
		}
		if e.Tag == 0x00020010 {
			in.TransferSyntax = strings.Trim(string(e.Value), " \x00")
		}
		pos = next
	}
	switch in.TransferSyntax {
	case "":
		return nil, fmt.Errorf("%w: no transfer syntax", ErrMalformed)
	case ImplicitVRLittleEndian:
		p.implicit = true
	case ExplicitVRBigEndian:
		p.order = binary.BigEndian
	}
	in.Order = p.order
	var err error
	in.Elements, err = p.Dataset(pos, len(b), 0)
	return in, err
}

type parser struct {
	b        []byte
	order    binary.ByteOrder
	implicit bool
	count    int
}

// Dataset reads the elements in b[pos:end].
func (p *parser) Dataset(pos, end, depth int) ([]Element, error) {
	var out []Element
	for pos < end {
		e, next, err := p.element(pos, end, depth)
		if err != nil {
			return out, err
		}
		out = append(out, e)
		pos = next
	}
	return out, nil
}

// implicitVR is the VR of an implicit VR element by the dictionary: UN
// when unknown; OW where OB or OW is allowed, as implicit VR little
// endian encodes it (PS3.5 A.1); US where US or SS is.
func implicitVR(t uint32) string {
	info, err := tag.Find(tag.Tag{Group: uint16(t >> 16), Element: uint16(t)})
	if err != nil || len(info.VRs) == 0 {
		return "UN"
	}
	for _, vr := range info.VRs {
		if vr == "OW" {
			return vr
		}
	}
	return info.VRs[0]
}

// longVR reports whether an explicit VR has a 4-byte length.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV":
		return true
	}
	return false
}

func (p *parser) header(pos, end int) (t uint32, vr string, length uint32, next int, err error) {
	b, o := p.b, p.order
	if pos+8 > end {
		return 0, "", 0, 0, fmt.Errorf("%w: element header cut at offset %d", ErrMalformed, pos)
	}
	t = uint32(o.Uint16(b[pos:]))<<16 | uint32(o.Uint16(b[pos+2:]))
	if t>>16 == 0xFFFE { // item tags have no VR
		return t, "", o.Uint32(b[pos+4:]), pos + 8, nil
	}
	explicit := !p.implicit || t>>16 == 0x0002
	if !explicit {
		vr = implicitVR(t)
		return t, vr, o.Uint32(b[pos+4:]), pos + 8, nil
	}
	vr = string(b[pos+4 : pos+6])
	if !longVR(vr) {
		return t, vr, uint32(o.Uint16(b[pos+6:])), pos + 8, nil
	}
	if pos+12 > end {
		return 0, "", 0, 0, fmt.Errorf("%w: element header cut at offset %d", ErrMalformed, pos)
	}
	return t, vr, o.Uint32(b[pos+8:]), pos + 12, nil
}

func (p *parser) element(pos, end, depth int) (Element, int, error) {
	if p.count++; p.count > maxElements {
		return Element{}, 0, fmt.Errorf("%w: more than %d elements", ErrMalformed, maxElements)
	}
	t, vr, n, next, err := p.header(pos, end)
	if err != nil {
		return Element{}, 0, err
	}
	e := Element{Tag: t, VR: vr}
	if n == undefined {
		switch {
		case t == pixelData:
			e.Fragments, next, err = p.fragments(next, end)
			return e, next, err
		case vr == "SQ" || vr == "UN":
			// UN of undefined length is a sequence in implicit VR
			// little endian (PS3.5 6.2.2).
			e.VR = "SQ"
			sub := p
			if vr == "UN" {
				sub = &parser{b: p.b, order: binary.LittleEndian, implicit: true, count: p.count}
			}
			e.Items, next, err = sub.sequence(next, end, depth+1, true)
			if sub != p {
				p.count = sub.count
			}
			return e, next, err
		default:
			return e, 0, fmt.Errorf("%w: element %08X of VR %s has undefined length", ErrMalformed, t, vr)
		}
	}
	if int64(n) > int64(end-next) {
		return e, 0, fmt.Errorf("%w: element %08X declares %d bytes, %d remain", ErrMalformed, t, n, end-next)
	}
	stop := next + int(n)
	if vr == "SQ" {
		e.Items, _, err = p.sequence(next, stop, depth+1, false)
		return e, stop, err
	}
	e.Value = p.b[next:stop]
	return e, stop, nil
}

// sequence reads items up to end, or, when delimited, up to the sequence
// delimiter, and returns where the sequence ends.
func (p *parser) sequence(pos, end, depth int, delimited bool) ([][]Element, int, error) {
	if depth > maxDepth {
		return nil, 0, fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	var items [][]Element
	for pos < end {
		t, _, n, next, err := p.header(pos, end)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case t == 0xFFFEE0DD && delimited:
			return items, next, nil
		case t != 0xFFFEE000:
			return nil, 0, fmt.Errorf("%w: %08X where an item was expected at offset %d", ErrMalformed, t, pos)
		case n == undefined:
			var item []Element
			for {
				if next+4 <= end && p.order.Uint16(p.b[next:]) == 0xFFFE && p.order.Uint16(p.b[next+2:]) == 0xE00D {
					next += 8
					break
				}
				if next >= end {
					return nil, 0, fmt.Errorf("%w: item without delimiter", ErrMalformed)
				}
				e, after, err := p.element(next, end, depth)
				if err != nil {
					return nil, 0, err
				}
				item, next = append(item, e), after
			}
			items, pos = append(items, item), next
		default:
			if int64(n) > int64(end-next) {
				return nil, 0, fmt.Errorf("%w: item declares %d bytes, %d remain", ErrMalformed, n, end-next)
			}
			item, err := p.Dataset(next, next+int(n), depth)
			if err != nil {
				return nil, 0, err
			}
			items, pos = append(items, item), next+int(n)
		}
	}
	if delimited {
		return nil, 0, fmt.Errorf("%w: sequence without delimiter", ErrMalformed)
	}
	return items, pos, nil
}

// fragments reads encapsulated pixel data up to its sequence delimiter.
func (p *parser) fragments(pos, end int) ([][]byte, int, error) {
	var out [][]byte
	for {
		t, _, n, next, err := p.header(pos, end)
		if err != nil {
			return nil, 0, err
		}
		if t == 0xFFFEE0DD {
			return out, next, nil
		}
		if t != 0xFFFEE000 || n == undefined || int64(n) > int64(end-next) {
			return nil, 0, fmt.Errorf("%w: bad pixel data fragment at offset %d", ErrMalformed, pos)
		}
		if p.count++; p.count > maxElements {
			return nil, 0, fmt.Errorf("%w: more than %d fragments", ErrMalformed, maxElements)
		}
		out, pos = append(out, p.b[next:next+int(n)]), next+int(n)
	}
}
