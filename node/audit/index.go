package audit

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
)

// index is the in-memory search index: one small entry per record with
// interned strings, plus posting lists by patient and by user (about 60
// bytes per record in all at a million records). It is built from the log on first use and brought up to date from
// the durable part of the log before each query; appends never wait for it.
type index struct {
	mu        sync.Mutex
	n         uint64 // records indexed
	off       int64  // log offset after the last indexed frame
	entries   []entry
	ids       map[string]uint32
	strs      []string // strs[id]; id 0 is ""
	byPatient map[uint32][]uint32
	byUser    map[uint32][]uint32
	unsorted  bool // some record's time is before its predecessor's
}

type entry struct {
	time                                          int64
	user, facility, peer, patient, token, purpose uint32
	event, action, outcome                        uint8
	breakGlass                                    bool
}

var eventList = func() []Event {
	var es []Event
	for e := range eventNames {
		es = append(es, e)
	}
	slices.Sort(es)
	return es
}()

func eventID(e Event) uint8 {
	i, ok := slices.BinarySearch(eventList, e)
	if !ok {
		return 0xff
	}
	return uint8(i)
}

func (x *index) intern(s string) uint32 {
	if s == "" {
		return 0
	}
	if id, ok := x.ids[s]; ok {
		return id
	}
	id := uint32(len(x.strs))
	x.ids[s] = id
	x.strs = append(x.strs, s)
	return id
}

// lookup returns the id of s, or false if no record holds s.
func (x *index) lookup(s string) (uint32, bool) {
	id, ok := x.ids[s]
	return id, ok
}

func (x *index) add(r *Record) {
	i := uint32(len(x.entries))
	e := entry{
		time:       r.Time.UnixNano(),
		user:       x.intern(r.User),
		facility:   x.intern(r.Facility),
		peer:       x.intern(r.Peer),
		patient:    x.intern(r.Patient),
		token:      x.intern(r.PatientToken),
		purpose:    x.intern(r.Purpose),
		event:      eventID(r.Event),
		action:     r.Action[0],
		outcome:    uint8(r.Outcome),
		breakGlass: r.BreakGlass != "",
	}
	if n := len(x.entries); n > 0 && e.time < x.entries[n-1].time {
		x.unsorted = true
	}
	x.entries = append(x.entries, e)
	if e.patient != 0 {
		x.byPatient[e.patient] = append(x.byPatient[e.patient], i)
	}
	if e.token != 0 && e.token != e.patient {
		x.byPatient[e.token] = append(x.byPatient[e.token], i)
	}
	if e.user != 0 {
		x.byUser[e.user] = append(x.byUser[e.user], i)
	}
	x.n++
}

// catchUp indexes the durable records not indexed yet. Called with x.mu
// held.
func (l *Log) catchUp(ctx context.Context) error {
	x := &l.idx
	if x.ids == nil {
		x.ids = map[string]uint32{"": 0}
		x.strs = []string{""}
		x.byPatient = map[uint32][]uint32{}
		x.byUser = map[uint32][]uint32{}
		x.off = int64(len(logMagic))
	}
	l.mu.Lock()
	if err := l.closedLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	n, end := l.synced, l.syncedEnd
	l.mu.Unlock()
	if n <= x.n {
		return nil
	}
	r := io.NewSectionReader(l.logf, x.off, end-x.off)
	t, err := scanFrames(r, x.off, func(off int64, p []byte) error {
		if x.n%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rec, err := decodeRecord(p, x.n)
		if err != nil {
			return &TamperError{Index: int64(x.n), Offset: off, Reason: fmt.Sprintf("record does not decode: %v", err)}
		}
		x.add(&rec)
		return nil
	})
	if err != nil {
		return err
	}
	x.off = t.Offset
	if t.Bytes > 0 || x.n != n {
		return &TamperError{Index: int64(x.n), Offset: t.Offset, Reason: fmt.Sprintf("log file changed under the open log (%d records indexed, %d written)", x.n, n)}
	}
	return nil
}

// match returns the indices of the records below bound that match q, in
// log order (newest first if q.Newest), at most q.Limit of them when
// q.Limit > 0. Called with x.mu held.
func (x *index) match(q *Query, bound uint64) []uint64 {
	bound = min(bound, uint64(len(x.entries)))
	f, ok := x.compile(q)
	if !ok {
		return nil
	}
	// Candidates: the shortest posting list, or a time range.
	var list []uint32
	useList := false
	if q.Patient != "" {
		list, useList = x.byPatient[f.patient], true
	}
	if q.User != "" {
		if l := x.byUser[f.user]; !useList || len(l) < len(list) {
			list, useList = l, true
		}
	}
	lo, hi := uint64(0), bound
	if !x.unsorted {
		if !q.Since.IsZero() {
			t := q.Since.UnixNano()
			lo = uint64(sort.Search(int(bound), func(i int) bool { return x.entries[i].time >= t }))
		}
		if !q.Until.IsZero() {
			t := q.Until.UnixNano()
			hi = uint64(sort.Search(int(bound), func(i int) bool { return x.entries[i].time >= t }))
		}
	}
	var out []uint64
	take := func(i uint64) bool {
		if f.match(&x.entries[i]) {
			out = append(out, i)
		}
		return q.Limit > 0 && len(out) >= q.Limit
	}
	if useList {
		a := sort.Search(len(list), func(k int) bool { return uint64(list[k]) >= lo })
		b := sort.Search(len(list), func(k int) bool { return uint64(list[k]) >= hi })
		if q.Newest {
			for k := b - 1; k >= a; k-- {
				if take(uint64(list[k])) {
					break
				}
			}
		} else {
			for k := a; k < b; k++ {
				if take(uint64(list[k])) {
					break
				}
			}
		}
		return out
	}
	if q.Newest {
		for i := hi; i > lo; i-- {
			if take(i - 1) {
				break
			}
		}
	} else {
		for i := lo; i < hi; i++ {
			if take(i) {
				break
			}
		}
	}
	return out
}

// filter is a Query resolved against the index's interned strings.
type filter struct {
	since, until                          int64
	user, facility, patient, purpose      uint32
	hasUser, hasFacility, hasPat, hasPurp bool
	event                                 uint8
	hasEvent                              bool
	action                                uint8
	outcomes                              uint8 // bit set; 0 means any
	breakGlass                            bool
}

// compile resolves q; ok is false when no record can match (a value no
// record holds).
func (x *index) compile(q *Query) (f filter, ok bool) {
	f.since, f.until = int64(-1<<63), int64(1<<63-1)
	if !q.Since.IsZero() {
		f.since = q.Since.UnixNano()
	}
	if !q.Until.IsZero() {
		f.until = q.Until.UnixNano()
	}
	str := func(s string, id *uint32, has *bool) bool {
		if s == "" {
			return true
		}
		*has = true
		*id, ok = x.lookup(s)
		return ok
	}
	if !str(q.User, &f.user, &f.hasUser) || !str(q.Facility, &f.facility, &f.hasFacility) ||
		!str(q.Patient, &f.patient, &f.hasPat) || !str(q.Purpose, &f.purpose, &f.hasPurp) {
		return f, false
	}
	if q.Event != "" {
		f.event, f.hasEvent = eventID(q.Event), true
	}
	if q.Action != "" {
		f.action = q.Action[0]
	}
	for _, o := range q.Outcomes {
		f.outcomes |= 1 << o
	}
	f.breakGlass = q.BreakGlass
	return f, true
}

func (f *filter) match(e *entry) bool {
	switch {
	case e.time < f.since || e.time >= f.until:
		return false
	case f.hasUser && e.user != f.user:
		return false
	case f.hasPat && e.patient != f.patient && e.token != f.patient:
		return false
	case f.hasFacility && e.facility != f.facility && e.peer != f.facility:
		return false
	case f.hasPurp && e.purpose != f.purpose:
		return false
	case f.hasEvent && e.event != f.event:
		return false
	case f.action != 0 && e.action != f.action:
		return false
	case f.outcomes != 0 && f.outcomes&(1<<e.outcome) == 0:
		return false
	case f.breakGlass && !e.breakGlass:
		return false
	}
	return true
}

// Actor is who reads the log: the reading is itself recorded (event 110101
// Audit Log Used) before any record is returned.
type Actor struct {
	User     string // required
	Role     string
	Facility string // default: this node's facility
	Purpose  string
	Address  string
}

// recordRead appends the "audit log read" record for a read by a of what q
// selects; nothing may be returned to a unless it succeeds. It returns the
// record's index: the read covers the records before it.
func (l *Log) recordRead(ctx context.Context, a Actor, what string, q *Query) (uint64, error) {
	if a.User == "" {
		return 0, fmt.Errorf("%w: the reader of the audit log has no user", ErrInvalidRecord)
	}
	fac := a.Facility
	if fac == "" {
		fac = l.cfg.Facility
	}
	r := Record{
		Event:    EventAuditLogUsed,
		Subtype:  Coded{System: "http://hl7.org/fhir/restful-interaction", Code: "search-type", Display: "search"},
		Action:   ActionRead,
		User:     a.User,
		UserRole: a.Role,
		Facility: fac,
		Address:  a.Address,
		Purpose:  a.Purpose,
		Query:    what,
	}
	if q != nil {
		r.Patient = q.Patient
		if s := q.Encode(); s != "" {
			r.Query += " " + s
		}
	}
	i, err := l.Append(ctx, r)
	if err != nil {
		return 0, fmt.Errorf("audit: record the reading of the log: %w", err)
	}
	return i, nil
}

// Search returns the records that match q, after appending a record of the
// search by a (fail-closed: if that record cannot be written, nothing is
// returned). The search covers the records before its own record. Each
// record returned was read from the file and checked against the Merkle
// tree.
func (l *Log) Search(ctx context.Context, a Actor, q Query) ([]Record, error) {
	var out []Record
	err := l.each(ctx, a, "search", q, func(r *Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// each records the read, then calls fn with each matching record.
func (l *Log) each(ctx context.Context, a Actor, what string, q Query, fn func(*Record) error) error {
	bound, err := l.recordRead(ctx, a, what, &q)
	if err != nil {
		return err
	}
	ids, err := l.matchIDs(ctx, &q, bound)
	if err != nil {
		return err
	}
	var buf []byte
	for k, i := range ids {
		if k%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var r Record
		r, buf, err = l.readRecord(i, buf)
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) matchIDs(ctx context.Context, q *Query, bound uint64) ([]uint64, error) {
	l.idx.mu.Lock()
	defer l.idx.mu.Unlock()
	if err := l.catchUp(ctx); err != nil {
		return nil, err
	}
	return l.idx.match(q, bound), nil
}
