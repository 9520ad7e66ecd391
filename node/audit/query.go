package audit

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Query selects records. Empty fields match everything; set fields must all
// match.
type Query struct {
	Patient    string    // Patient or PatientToken equals it
	User       string    // User equals it
	Facility   string    // Facility or Peer equals it
	Purpose    string    // Purpose equals it
	Event      Event     // Event equals it
	Action     Action    // Action equals it
	Outcomes   []Outcome // Outcome is one of them
	BreakGlass bool      // only break-glass records
	Since      time.Time // Time >= Since
	Until      time.Time // Time < Until
	Newest     bool      // newest first
	Limit      int       // at most this many records; 0 means no limit
}

// Encode returns q as URL query parameters (the form ParseQuery reads), in
// a fixed order; "" for the empty query.
func (q Query) Encode() string {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("patient", q.Patient)
	set("user", q.User)
	set("facility", q.Facility)
	set("purpose", q.Purpose)
	set("event", string(q.Event))
	set("action", string(q.Action))
	var os []string
	for _, o := range q.Outcomes {
		os = append(os, o.String())
	}
	set("outcome", strings.Join(os, ","))
	if q.BreakGlass {
		v.Set("breakglass", "true")
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Newest {
		v.Set("newest", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v.Encode()
}

// ParseQuery reads a Query from URL query parameters: patient, user,
// facility, purpose, event (a DCM code), action (C, R, U, D or E), outcome
// (comma-separated names, see Outcome.String), breakglass, since and until
// (RFC 3339 or a date, 2006-01-02, taken as midnight UTC), newest and limit.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{
		Patient:  v.Get("patient"),
		User:     v.Get("user"),
		Facility: v.Get("facility"),
		Purpose:  v.Get("purpose"),
		Event:    Event(v.Get("event")),
		Action:   Action(v.Get("action")),
	}
	if q.Event != "" && !q.Event.Valid() {
		return Query{}, fmt.Errorf("audit: query: unknown event code %q", q.Event)
	}
	if q.Action != "" && !q.Action.Valid() {
		return Query{}, fmt.Errorf("audit: query: unknown action %q", q.Action)
	}
	if s := v.Get("outcome"); s != "" {
		for _, name := range strings.Split(s, ",") {
			o, err := ParseOutcome(name)
			if err != nil {
				return Query{}, fmt.Errorf("audit: query: %w", err)
			}
			q.Outcomes = append(q.Outcomes, o)
		}
	}
	var err error
	if q.BreakGlass, err = parseBool(v, "breakglass"); err != nil {
		return Query{}, err
	}
	if q.Newest, err = parseBool(v, "newest"); err != nil {
		return Query{}, err
	}
	if q.Since, err = parseTime(v, "since"); err != nil {
		return Query{}, err
	}
	if q.Until, err = parseTime(v, "until"); err != nil {
		return Query{}, err
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return Query{}, fmt.Errorf("audit: query: limit %q", s)
		}
	}
	return q, nil
}

func parseBool(v url.Values, k string) (bool, error) {
	s := v.Get(k)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("audit: query: %s %q", k, s)
	}
	return b, nil
}

func parseTime(v url.Values, k string) (time.Time, error) {
	s := v.Get(k)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("audit: query: %s %q is neither RFC 3339 nor a date", k, s)
}
