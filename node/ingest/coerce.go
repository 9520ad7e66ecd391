package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Coercion is how a study received from another facility is presented on
// the local side (IHE Import Reconciliation Workflow): the local patient's
// identifiers replace the sender's. An empty field leaves that attribute
// as it is.
type Coercion struct {
	PatientID   string // (0010,0020)
	Issuer      string // (0010,0021) Issuer of Patient ID
	PatientName string // (0010,0010), DICOM PN form FAMILY^GIVEN
	Accession   string // (0008,0050)
	// Source names where the original values came from (the sending
	// facility), System the system that changed them; Time is when.
	Source, System string
	Time           time.Time
}

// Attributes coerced, and the ones that record the coercion (PS3.3
// C.12.1.1.9, Original Attributes Sequence).
var (
	tagAccession       = tag.Tag{Group: 0x0008, Element: 0x0050}
	tagPatientName     = tag.Tag{Group: 0x0010, Element: 0x0010}
	tagPatientID       = tag.Tag{Group: 0x0010, Element: 0x0020}
	tagIssuer          = tag.Tag{Group: 0x0010, Element: 0x0021}
	tagModifiedAttrs   = tag.Tag{Group: 0x0400, Element: 0x0550}
	tagOriginalAttrs   = tag.Tag{Group: 0x0400, Element: 0x0561}
	tagModDateTime     = tag.Tag{Group: 0x0400, Element: 0x0562}
	tagModifyingSystem = tag.Tag{Group: 0x0400, Element: 0x0563}
	tagSourceOfValues  = tag.Tag{Group: 0x0400, Element: 0x0564}
	tagReason          = tag.Tag{Group: 0x0400, Element: 0x0565}
)

// ErrCoerce reports a value that cannot be written into an instance.
var ErrCoerce = errors.New("ingest: cannot coerce")

// Coerce returns a copy of the Part 10 instance data with the attributes
// of c replaced, the replaced values kept in a new item of the Original
// Attributes Sequence (reason COERCE), and nothing else changed: the same
// transfer syntax, the same UIDs, every other byte as it was. The data is
// checked by the same bounded pre-scan as ingest first.
func Coerce(data []byte, c Coercion) ([]byte, error) {
	l, err := guard(data)
	if err != nil {
		return nil, err
	}
	news := []struct {
		t     tag.Tag
		vr, v string
		max   int
	}{
		{tagAccession, "SH", c.Accession, 16},
		{tagPatientName, "PN", c.PatientName, 64 * 5},
		{tagPatientID, "LO", c.PatientID, 64},
		{tagIssuer, "LO", c.Issuer, 64},
	}
	w := &writer{order: l.order.(binary.AppendByteOrder), implicit: l.implicit}
	changed := map[tag.Tag][]byte{}
	for _, n := range news {
		if n.v == "" {
			continue
		}
		if len(n.v) > n.max || strings.ContainsAny(n.v, "\\\x00\r\n") {
			return nil, fmt.Errorf("%w: %s value %q", ErrCoerce, n.t, n.v)
		}
		changed[n.t] = w.element(n.t, n.vr, pad([]byte(n.v), ' '))
	}
	if len(changed) == 0 {
		return data, nil
	}

	// Walk the top-level elements up to the Original Attributes Sequence;
	// what follows (pixel data among it) is copied as it is.
	type piece struct {
		t tag.Tag
		b []byte
	}
	var pieces []piece
	var originals []piece // the replaced elements, as they were
	var oas *elem
	s := &scanner{b: data, order: l.order, implicit: l.implicit}
	p, end := l.body, len(data)
	for p < end {
		e, err := s.element(p, end, 0)
		if err != nil {
			return nil, err
		}
		if tagAfter(e.tag, tagOriginalAttrs) {
			break
		}
		switch {
		case changed[e.tag] != nil:
			originals = append(originals, piece{e.tag, data[e.off:e.next]})
		case e.tag.Element == 0 && (e.tag.Group == 0x0008 || e.tag.Group == 0x0010 || e.tag.Group == 0x0400):
			// A group length would be wrong after the change; it is
			// optional, so it goes.
		case e.tag == tagOriginalAttrs:
			oas = &e
		default:
			pieces = append(pieces, piece{e.tag, data[e.off:e.next]})
		}
		p = e.next
	}
	tail := data[p:]

	// The item that records the change: the original values (empty for
	// an attribute that was absent) and who changed them, when and why.
	var mod []byte
	for _, n := range news {
		if changed[n.t] == nil {
			continue
		}
		i := slices.IndexFunc(originals, func(o piece) bool { return o.t == n.t })
		if i >= 0 {
			mod = append(mod, originals[i].b...)
		} else {
			mod = append(mod, w.element(n.t, n.vr, nil)...)
		}
	}
	t := c.Time
	if t.IsZero() {
		t = time.Now()
	}
	var item []byte
	item = append(item, w.sequence(tagModifiedAttrs, w.item(mod))...)
	item = append(item, w.element(tagModDateTime, "DT", pad([]byte(t.UTC().Format("20060102150405.000000")+"+0000"), ' '))...)
	item = append(item, w.element(tagModifyingSystem, "LO", pad([]byte(limit(c.System, 64)), ' '))...)
	item = append(item, w.element(tagSourceOfValues, "LO", pad([]byte(limit(c.Source, 64)), ' '))...)
	item = append(item, w.element(tagReason, "CS", []byte("COERCE"))...)
	newItem := w.item(item)

	var oasBytes []byte
	if oas == nil {
		oasBytes = w.sequence(tagOriginalAttrs, newItem)
	} else if oas.vlen < 0 {
		// Undefined length: the new item goes before the delimiter.
		body := data[oas.off : oas.next-8]
		oasBytes = append(append(append([]byte(nil), body...), newItem...), data[oas.next-8:oas.next]...)
	} else {
		oasBytes = w.sequence(tagOriginalAttrs, append(append([]byte(nil), data[oas.vstart:oas.next]...), newItem...))
	}
	for t, b := range changed {
		pieces = append(pieces, piece{t, b})
	}
	pieces = append(pieces, piece{tagOriginalAttrs, oasBytes})
	slices.SortStableFunc(pieces, func(a, b piece) int { return compareTags(a.t, b.t) })

	out := make([]byte, 0, len(data)+len(oasBytes)+256)
	out = append(out, data[:l.body]...)
	for _, pc := range pieces {
		out = append(out, pc.b...)
	}
	out = append(out, tail...)
	if _, err := guard(out); err != nil {
		return nil, fmt.Errorf("%w: the result does not check: %v", ErrCoerce, err)
	}
	return out, nil
}

func compareTags(a, b tag.Tag) int {
	if a.Group != b.Group {
		return int(a.Group) - int(b.Group)
	}
	return int(a.Element) - int(b.Element)
}

func tagAfter(a, b tag.Tag) bool { return compareTags(a, b) > 0 }

func pad(b []byte, with byte) []byte {
	if len(b)%2 == 1 {
		b = append(b, with)
	}
	return b
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// writer encodes elements in a dataset's transfer syntax.
type writer struct {
	order    binary.AppendByteOrder
	implicit bool
}

func (w *writer) header(t tag.Tag, vr string, n int) []byte {
	b := w.order.AppendUint16(nil, t.Group)
	b = w.order.AppendUint16(b, t.Element)
	switch {
	case w.implicit:
		b = w.order.AppendUint32(b, uint32(n))
	case vr == "SQ":
		b = append(b, 'S', 'Q', 0, 0)
		b = w.order.AppendUint32(b, uint32(n))
	default:
		b = append(b, vr...)
		b = w.order.AppendUint16(b, uint16(n))
	}
	return b
}

func (w *writer) element(t tag.Tag, vr string, v []byte) []byte {
	return append(w.header(t, vr, len(v)), v...)
}

// sequence is a sequence of defined length holding items.
func (w *writer) sequence(t tag.Tag, items []byte) []byte {
	return append(w.header(t, "SQ", len(items)), items...)
}

// item is an item of defined length.
func (w *writer) item(content []byte) []byte {
	b := w.order.AppendUint16(nil, 0xFFFE)
	b = w.order.AppendUint16(b, 0xE000)
	b = w.order.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}
