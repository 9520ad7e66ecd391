package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// FlagKind names a pattern a compliance officer reviews.
type FlagKind string

// The flags.
const (
	// FlagBreakGlass: emergency access that overrode policy (BreakGlass set).
	FlagBreakGlass FlagKind = "break-glass"
	// FlagAfterHours: access to patient data outside working hours.
	FlagAfterHours FlagKind = "after-hours"
	// FlagBulkAccess: the access with which one user reached
	// FlagRules.BulkPatients distinct patients within FlagRules.BulkWindow.
	FlagBulkAccess FlagKind = "bulk-access"
	// FlagDenied: a request refused by policy (Outcome Denied).
	FlagDenied FlagKind = "denied"
	// FlagNewFacility: the first access to patient data by a user of a
	// facility never seen before in the log (other than this node's own).
	FlagNewFacility FlagKind = "new-facility"
)

// FlagKinds returns every flag kind.
func FlagKinds() []FlagKind {
	return []FlagKind{FlagBreakGlass, FlagAfterHours, FlagBulkAccess, FlagDenied, FlagNewFacility}
}

// FlagRules configure the flags. An access is a record that names a
// patient (ID or token) or a study.
type FlagRules struct {
	// Working hours: [WorkStart, WorkEnd) after midnight on WorkDays, in
	// Location (nil means UTC). An access outside them is flagged.
	WorkStart, WorkEnd time.Duration
	WorkDays           []time.Weekday
	Location           *time.Location
	// BulkPatients distinct patients accessed by one user within
	// BulkWindow is bulk access.
	BulkPatients int
	BulkWindow   time.Duration
}

// DefaultFlagRules: working hours 07:00 to 19:00 UTC, Monday to Friday; 50
// distinct patients within an hour is bulk access.
func DefaultFlagRules() FlagRules {
	return FlagRules{
		WorkStart:    7 * time.Hour,
		WorkEnd:      19 * time.Hour,
		WorkDays:     []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		BulkPatients: 50,
		BulkWindow:   time.Hour,
	}
}

// Validate reports whether the rules make sense.
func (r FlagRules) Validate() error {
	switch {
	case r.WorkStart < 0 || r.WorkEnd > 24*time.Hour || r.WorkStart > r.WorkEnd:
		return errors.New("audit: flag rules: working hours must satisfy 0 <= start <= end <= 24h")
	case r.BulkPatients < 1:
		return errors.New("audit: flag rules: BulkPatients must be at least 1")
	case r.BulkWindow <= 0:
		return errors.New("audit: flag rules: BulkWindow must be positive")
	}
	return nil
}

// outsideHours reports whether t falls outside working hours.
func (r *FlagRules) outsideHours(t time.Time) bool {
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	if !slices.Contains(r.WorkDays, t.Weekday()) {
		return true
	}
	y, m, d := t.Date()
	since := t.Sub(time.Date(y, m, d, 0, 0, 0, 0, loc))
	return since < r.WorkStart || since >= r.WorkEnd
}

// Flag is a record that matched a flag rule.
type Flag struct {
	Kind   FlagKind `json:"kind"`
	Detail string   `json:"detail,omitempty"`
	Record Record   `json:"record"`
}

// flagger applies the rules to index entries in log order.
type flagger struct {
	rules  FlagRules
	own    uint32 // this facility's interned id, or 0
	seen   map[uint32]bool
	window map[uint32]*userWindow
}

type userWindow struct {
	events  []windowEvent // in time order
	count   map[uint32]int
	flagged bool
}

type windowEvent struct {
	time    int64
	patient uint32
}

func newFlagger(rules FlagRules, own uint32) *flagger {
	return &flagger{rules: rules, own: own, seen: map[uint32]bool{}, window: map[uint32]*userWindow{}}
}

type raised struct {
	kind   FlagKind
	detail string
}

// observe returns the flags raised by entry e.
func (f *flagger) observe(e *entry) []raised {
	var out []raised
	add := func(k FlagKind, d string) { out = append(out, raised{k, d}) }
	if e.breakGlass {
		add(FlagBreakGlass, "")
	}
	if Outcome(e.outcome) == Denied {
		add(FlagDenied, "")
	}
	access := e.patient != 0 || e.token != 0
	if !access {
		return out
	}
	if f.rules.outsideHours(time.Unix(0, e.time)) {
		add(FlagAfterHours, "")
	}
	if e.facility != 0 && e.facility != f.own && !f.seen[e.facility] {
		f.seen[e.facility] = true
		add(FlagNewFacility, "")
	}
	if e.user != 0 {
		patient := e.patient
		if patient == 0 {
			patient = e.token
		}
		w := f.window[e.user]
		if w == nil {
			w = &userWindow{count: map[uint32]int{}}
			f.window[e.user] = w
		}
		cut := e.time - int64(f.rules.BulkWindow)
		k := 0
		for k < len(w.events) && w.events[k].time <= cut {
			if w.count[w.events[k].patient]--; w.count[w.events[k].patient] == 0 {
				delete(w.count, w.events[k].patient)
			}
			k++
		}
		w.events = append(w.events[k:], windowEvent{e.time, patient})
		w.count[patient]++
		switch n := len(w.count); {
		case n >= f.rules.BulkPatients && !w.flagged:
			w.flagged = true
			add(FlagBulkAccess, fmt.Sprintf("%d distinct patients within %s", n, f.rules.BulkWindow))
		case n < f.rules.BulkPatients:
			w.flagged = false
		}
	}
	return out
}

// Flags returns the flagged records among those q selects (all kinds when
// kinds is empty), after appending a record of the reading by a. Rules that
// need history (bulk access, new facility) are applied over the whole log,
// and q only selects which flagged records are returned; q.Limit bounds the
// number of flags.
func (l *Log) Flags(ctx context.Context, a Actor, q Query, kinds ...FlagKind) ([]Flag, error) {
	for _, k := range kinds {
		if !slices.Contains(FlagKinds(), k) {
			return nil, fmt.Errorf("audit: unknown flag kind %q", k)
		}
	}
	bound, err := l.recordRead(ctx, a, "flags", &q)
	if err != nil {
		return nil, err
	}
	type hit struct {
		index  uint64
		kind   FlagKind
		detail string
	}
	var hits []hit
	l.idx.mu.Lock()
	err = l.catchUp(ctx)
	if err == nil {
		x := &l.idx
		own, _ := x.lookup(l.cfg.Facility)
		fl := newFlagger(l.cfg.Flags, own)
		f, ok := x.compile(&q)
		for i := uint64(0); i < min(bound, uint64(len(x.entries))); i++ {
			e := &x.entries[i]
			for _, h := range fl.observe(e) {
				if ok && f.match(e) && (len(kinds) == 0 || slices.Contains(kinds, h.kind)) {
					hits = append(hits, hit{i, h.kind, h.detail})
				}
			}
		}
	}
	l.idx.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if q.Newest {
		slices.Reverse(hits)
	}
	if q.Limit > 0 && len(hits) > q.Limit {
		hits = hits[:q.Limit]
	}
	out := make([]Flag, 0, len(hits))
	var buf []byte
	for _, h := range hits {
		var r Record
		r, buf, err = l.readRecord(h.index, buf)
		if err != nil {
			return nil, err
		}
		out = append(out, Flag{Kind: h.kind, Detail: h.detail, Record: r})
	}
	return out, nil
}
