package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"
)

// testKey returns a fixed Ed25519 key for name.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("audit test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
	// step is added after every reading.
	step time.Duration
}

func newClock(t time.Time, step time.Duration) *clock { return &clock{t: t, step: step} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday, 09:00 UTC

func testConfig(t testing.TB, dir string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Facility = "fac-a"
	cfg.Key = testKey("fac-a")
	cfg.Now = newClock(epoch, time.Second).Now
	return cfg
}

func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// sample returns a varied, deterministic record for i.
func sample(i int) Record {
	events := []Event{EventPatientRecord, EventExport, EventImport, EventQuery, EventInstancesAccessed, EventUserAuthentication}
	r := Record{
		Event:    events[i%len(events)],
		Action:   []Action{ActionRead, ActionCreate, ActionExecute, ActionUpdate, ActionDelete}[i%5],
		Outcome:  Outcome(i % int(numOutcomes)),
		User:     fmt.Sprintf("user%d", i%7),
		Facility: []string{"fac-a", "fac-b", "fac-c"}[i%3],
		Patient:  fmt.Sprintf("HOSP|%05d", i%13),
		Study:    fmt.Sprintf("1.2.826.0.1.3680043.2.%d", i%11),
		Purpose:  []string{"TREAT", "ETREAT", "COC"}[i%3],
	}
	if i%4 == 0 {
		r.Peer = "fac-d"
	}
	if i%9 == 0 {
		r.BreakGlass = "unconscious patient"
	}
	if r.Event == EventQuery {
		r.Query = fmt.Sprintf("PatientName=DOE^J*&n=%d", i)
	}
	return r
}

// fill appends n sample records and returns their indices' records as read back.
func fill(t testing.TB, l *Log, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(context.Background(), sample(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func verifyOpts(cfg Config) VerifyOptions {
	return VerifyOptions{Origin: cfg.origin(), Key: cfg.Key.Public().(ed25519.PublicKey)}
}

var reader = Actor{User: "officer1", Purpose: "HOPERAT"}
