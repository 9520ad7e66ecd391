package consent

import (
	"errors"
	"testing"
	"time"
)

var (
	t0   = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	day  = 24 * time.Hour
	optO = Policy{Mode: OptOut, DefaultPurposes: []Purpose{Treat, EmergencyTreat}, BreakGlass: true}
	optI = Policy{Mode: OptIn, DefaultPurposes: []Purpose{Treat, EmergencyTreat}, BreakGlass: true}
	noBG = Policy{Mode: OptIn, DefaultPurposes: []Purpose{Treat, EmergencyTreat}}
)

func dir(id string, e Effect, mod ...func(*Directive)) Directive {
	d := Directive{ID: id, Patient: "HOSP-A|1", Effect: e, RecordedBy: "registrar@HOSP-A", RecordedAt: t0.Add(-30 * day)}
	for _, m := range mod {
		m(&d)
	}
	return d
}

func facilities(f ...string) func(*Directive)  { return func(d *Directive) { d.Facilities = f } }
func purposesOf(p ...Purpose) func(*Directive) { return func(d *Directive) { d.Purposes = p } }
func period(from, to time.Time) func(*Directive) {
	return func(d *Directive) { d.NotBefore, d.NotAfter = from, to }
}

func req(facility string, p Purpose, reason string) Request {
	return Request{Facility: facility, User: "dr.x", Purpose: p, Reason: reason, Time: t0}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    Request
		dirs   []Directive
		policy Policy
		want   Decision
	}{
		{"opt-out permits treatment", req("B", Treat, ""), nil, optO,
			Decision{Outcome: Permit, Rule: RulePolicyOptOut}},
		{"opt-in denies treatment", req("B", Treat, ""), nil, optI,
			Decision{Outcome: Deny, Rule: RulePolicyOptIn}},
		{"uncovered purpose denied under opt-out", req("B", Research, ""), nil, optO,
			Decision{Outcome: Deny, Rule: RulePurposeNotCovered}},
		{"permit directive under opt-in", req("B", Treat, ""), []Directive{dir("p1", EffectPermit)}, optI,
			Decision{Outcome: Permit, Rule: RuleDirectivePermit, Directive: "p1"}},
		{"permit directive for an uncovered purpose", req("B", Research, ""),
			[]Directive{dir("p1", EffectPermit, purposesOf(Research))}, optO,
			Decision{Outcome: Permit, Rule: RuleDirectivePermit, Directive: "p1"}},
		{"deny directive under opt-out", req("B", Treat, ""), []Directive{dir("d1", EffectDeny)}, optO,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "d1"}},
		{"deny beats permit", req("B", Treat, ""),
			[]Directive{dir("p1", EffectPermit), dir("d1", EffectDeny, facilities("B"))}, optO,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "d1"}},
		{"smallest deny id decides", req("B", Treat, ""),
			[]Directive{dir("d2", EffectDeny), dir("d1", EffectDeny)}, optO,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "d1"}},
		{"deny for another facility does not apply", req("B", Treat, ""),
			[]Directive{dir("d1", EffectDeny, facilities("C", "D"))}, optO,
			Decision{Outcome: Permit, Rule: RulePolicyOptOut}},
		{"deny for another purpose does not apply", req("B", Treat, ""),
			[]Directive{dir("d1", EffectDeny, purposesOf(Research))}, optO,
			Decision{Outcome: Permit, Rule: RulePolicyOptOut}},
		{"expired permit does not apply", req("B", Treat, ""),
			[]Directive{dir("p1", EffectPermit, period(t0.Add(-2*day), t0))}, optI,
			Decision{Outcome: Deny, Rule: RulePolicyOptIn}},
		{"permit applies from its first instant", req("B", Treat, ""),
			[]Directive{dir("p1", EffectPermit, period(t0, t0.Add(day)))}, optI,
			Decision{Outcome: Permit, Rule: RuleDirectivePermit, Directive: "p1"}},
		{"future deny does not apply yet", req("B", Treat, ""),
			[]Directive{dir("d1", EffectDeny, period(t0.Add(time.Millisecond), time.Time{}))}, optO,
			Decision{Outcome: Permit, Rule: RulePolicyOptOut}},
		{"unknown effect counts as deny", req("B", Treat, ""),
			[]Directive{dir("x", Effect(9))}, optO,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "x"}},
		{"break-glass overrides a deny directive", req("B", EmergencyTreat, "unconscious, trauma bay"),
			[]Directive{dir("d1", EffectDeny)}, optO,
			Decision{Outcome: BreakGlass, Rule: RuleBreakGlass, Directive: "d1", Overridden: RuleDirectiveDeny}},
		{"break-glass overrides opt-in", req("B", EmergencyTreat, "stroke"), nil, optI,
			Decision{Outcome: BreakGlass, Rule: RuleBreakGlass, Overridden: RulePolicyOptIn}},
		{"break-glass overrides an uncovered purpose", req("B", EmergencyTreat, "stroke"), nil,
			Policy{Mode: OptOut, DefaultPurposes: []Purpose{Treat}, BreakGlass: true},
			Decision{Outcome: BreakGlass, Rule: RuleBreakGlass, Overridden: RulePurposeNotCovered}},
		{"break-glass needs a reason", req("B", EmergencyTreat, "  \t"), []Directive{dir("d1", EffectDeny)}, optO,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "d1"}},
		{"break-glass needs ETREAT", req("B", Treat, "urgent"), []Directive{dir("d1", EffectDeny)}, optO,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "d1"}},
		{"break-glass needs the policy", req("B", EmergencyTreat, "stroke"), []Directive{dir("d1", EffectDeny)}, noBG,
			Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: "d1"}},
		{"emergency already permitted is not break-glass", req("B", EmergencyTreat, "stroke"), nil, optO,
			Decision{Outcome: Permit, Rule: RulePolicyOptOut}},
		{"invalid purpose", req("B", "FUN", ""), nil, optO,
			Decision{Outcome: Deny, Rule: RuleInvalidRequest}},
		{"no facility", req(" ", Treat, ""), nil, optO,
			Decision{Outcome: Deny, Rule: RuleInvalidRequest}},
		{"no time", Request{Facility: "B", Purpose: Treat}, nil, optO,
			Decision{Outcome: Deny, Rule: RuleInvalidRequest}},
		{"invalid policy fails closed", req("B", EmergencyTreat, "stroke"), nil, Policy{BreakGlass: true},
			Decision{Outcome: Deny, Rule: RuleInvalidPolicy}},
		{"policy with unknown purpose fails closed", req("B", Treat, ""), nil,
			Policy{Mode: OptOut, DefaultPurposes: []Purpose{"X"}},
			Decision{Outcome: Deny, Rule: RuleInvalidPolicy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.req, tc.dirs, tc.policy)
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if allowed := got.Outcome != Deny; got.Allowed() != allowed || (got.Err() == nil) != allowed {
				t.Fatalf("Allowed %v, Err %v for %v", got.Allowed(), got.Err(), got.Outcome)
			}
			if !got.Allowed() && !errors.Is(got.Err(), ErrDenied) {
				t.Fatalf("Err %v does not wrap ErrDenied", got.Err())
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := Decide(req("B", Treat, ""), nil, p); d.Outcome != Permit {
		t.Errorf("treatment under the default policy: %+v", d)
	}
	if d := Decide(req("B", Research, ""), nil, p); d.Outcome != Deny {
		t.Errorf("research under the default policy: %+v", d)
	}
	if d := Decide(req("B", EmergencyTreat, "stroke"), []Directive{dir("d", EffectDeny)}, p); d.Outcome != BreakGlass {
		t.Errorf("emergency over a deny under the default policy: %+v", d)
	}
}

func TestStrings(t *testing.T) {
	for got, want := range map[string]string{
		Permit.String(): "permit", Deny.String(): "deny", BreakGlass.String(): "break-glass", Outcome(0).String(): "Outcome(0)",
		EffectPermit.String(): "permit", EffectDeny.String(): "deny", Effect(7).String(): "Effect(7)",
		OptIn.String(): "opt-in", OptOut.String(): "opt-out", Mode(0).String(): "Mode(0)",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if len(Purposes()) != 9 || !Treat.Valid() || Purpose("treat").Valid() || Purpose("").Valid() {
		t.Error("purpose set")
	}
}
