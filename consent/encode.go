package consent

import (
	"time"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

var (
	_ canon.Marshaler   = (*Directive)(nil)
	_ canon.Unmarshaler = (*Directive)(nil)
	_ canon.Marshaler   = Policy{}
	_ canon.Unmarshaler = (*Policy)(nil)
)

// MarshalCanonical implements canon.Marshaler. Tags: 1 ID, 2 Patient,
// 3 Effect, 4 Facilities, 5 Purposes, 6 NotBefore, 7 NotAfter, 8 RecordedBy,
// 9 RecordedAt; times are milliseconds since 1970 (zero time omitted), so
// finer precision is dropped. Encode only directives that pass Validate.
func (d *Directive) MarshalCanonical(e *canon.Encoder) {
	e.String(1, d.ID)
	e.String(2, d.Patient)
	e.Uint(3, uint64(d.Effect))
	e.Strings(4, d.Facilities)
	e.Strings(5, purposeStrings(d.Purposes))
	e.Int(6, millis(d.NotBefore))
	e.Int(7, millis(d.NotAfter))
	e.String(8, d.RecordedBy)
	e.Int(9, millis(d.RecordedAt))
}

// UnmarshalCanonical implements canon.Unmarshaler. It rejects directives
// that fail Validate, so whatever decodes is well formed.
func (d *Directive) UnmarshalCanonical(dec *canon.Decoder) {
	d.ID = dec.String(1)
	d.Patient = dec.String(2)
	effect := dec.Uint(3)
	d.Facilities = dec.Strings(4)
	d.Purposes = toPurposes(dec.Strings(5))
	d.NotBefore = fromMillis(dec.Int(6))
	d.NotAfter = fromMillis(dec.Int(7))
	d.RecordedBy = dec.String(8)
	d.RecordedAt = fromMillis(dec.Int(9))
	if dec.Err() != nil {
		return
	}
	if effect > 255 {
		effect = 0 // invalid either way; Validate reports it
	}
	d.Effect = Effect(effect)
	dec.Fail(d.Validate())
}

// MarshalCanonical implements canon.Marshaler. Tags: 1 Mode, 2
// DefaultPurposes, 3 BreakGlass.
func (p Policy) MarshalCanonical(e *canon.Encoder) {
	e.Uint(1, uint64(p.Mode))
	e.Strings(2, purposeStrings(p.DefaultPurposes))
	e.Bool(3, p.BreakGlass)
}

// UnmarshalCanonical implements canon.Unmarshaler; it rejects policies that
// fail Validate.
func (p *Policy) UnmarshalCanonical(dec *canon.Decoder) {
	mode := dec.Uint(1)
	p.DefaultPurposes = toPurposes(dec.Strings(2))
	p.BreakGlass = dec.Bool(3)
	if dec.Err() != nil {
		return
	}
	if mode > 255 {
		mode = 0
	}
	p.Mode = Mode(mode)
	dec.Fail(p.Validate())
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func purposeStrings(ps []Purpose) []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

func toPurposes(ss []string) []Purpose {
	if ss == nil {
		return nil
	}
	out := make([]Purpose, len(ss))
	for i, s := range ss {
		out[i] = Purpose(s)
	}
	return out
}
