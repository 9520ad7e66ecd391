package consent

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// reference is a deliberately plain evaluator of the rules in Decide's
// documentation, written without Decide's helpers: it collects the applicable
// directives into sets and reads the decision off a table.
func reference(r Request, dirs []Directive, p Policy) Decision {
	known := map[Purpose]bool{}
	for _, x := range []string{"TREAT", "ETREAT", "COC", "HPAYMT", "HOPERAT", "HRESCH", "PUBHLTH", "PATRQT", "HLEGAL"} {
		known[Purpose(x)] = true
	}
	if strings.TrimSpace(r.Facility) == "" || !known[r.Purpose] || r.Time.IsZero() {
		return Decision{Outcome: Deny, Rule: RuleInvalidRequest}
	}
	policyOK := p.Mode == OptIn || p.Mode == OptOut
	for _, x := range p.DefaultPurposes {
		policyOK = policyOK && known[x]
	}
	if !policyOK {
		return Decision{Outcome: Deny, Rule: RuleInvalidPolicy}
	}

	now := r.Time.UnixNano()
	var denies, permits []string
	for _, d := range dirs {
		inFacilities := len(d.Facilities) == 0
		for _, f := range d.Facilities {
			inFacilities = inFacilities || f == r.Facility
		}
		inPurposes := len(d.Purposes) == 0
		for _, x := range d.Purposes {
			inPurposes = inPurposes || x == r.Purpose
		}
		started := d.NotBefore.IsZero() || now >= d.NotBefore.UnixNano()
		ended := !d.NotAfter.IsZero() && now >= d.NotAfter.UnixNano()
		if !inFacilities || !inPurposes || !started || ended {
			continue
		}
		if d.Effect == EffectPermit {
			permits = append(permits, d.ID)
		} else {
			denies = append(denies, d.ID)
		}
	}
	smallest := func(ids []string) string {
		m := ids[0]
		for _, id := range ids {
			if id < m {
				m = id
			}
		}
		return m
	}
	covered := false
	for _, x := range p.DefaultPurposes {
		covered = covered || x == r.Purpose
	}
	glass := p.BreakGlass && r.Purpose == "ETREAT" && strings.TrimSpace(r.Reason) != ""

	switch {
	case len(denies) > 0 && glass:
		return Decision{Outcome: BreakGlass, Rule: RuleBreakGlass, Directive: smallest(denies), Overridden: RuleDirectiveDeny}
	case len(denies) > 0:
		return Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: smallest(denies)}
	case len(permits) > 0:
		return Decision{Outcome: Permit, Rule: RuleDirectivePermit, Directive: smallest(permits)}
	case covered && p.Mode == OptOut:
		return Decision{Outcome: Permit, Rule: RulePolicyOptOut}
	case covered && glass:
		return Decision{Outcome: BreakGlass, Rule: RuleBreakGlass, Overridden: RulePolicyOptIn}
	case covered:
		return Decision{Outcome: Deny, Rule: RulePolicyOptIn}
	case glass:
		return Decision{Outcome: BreakGlass, Rule: RuleBreakGlass, Overridden: RulePurposeNotCovered}
	default:
		return Decision{Outcome: Deny, Rule: RulePurposeNotCovered}
	}
}

type gen struct{ r *rand.Rand }

func (g gen) pick(n int) int { return g.r.IntN(n) }

func (g gen) time() time.Time {
	if g.pick(3) == 0 {
		return time.Time{}
	}
	return t0.Add(time.Duration(g.pick(7)-3) * time.Hour)
}

func (g gen) facilities() []string {
	var out []string
	for _, f := range []string{"A", "B", "C"} {
		if g.pick(3) == 0 {
			out = append(out, f)
		}
	}
	return out
}

var invalidPurposes = []Purpose{"", "XYZ", "treat"}

func (g gen) purpose() Purpose {
	switch n := g.pick(40); {
	case n == 0:
		return invalidPurposes[g.pick(len(invalidPurposes))]
	case n < 24: // favour the purposes the rules single out
		return []Purpose{Treat, EmergencyTreat}[n%2]
	}
	return Purposes()[g.pick(len(Purposes()))]
}

func (g gen) purposes() []Purpose {
	var out []Purpose
	for range g.pick(3) {
		out = append(out, g.purpose())
	}
	return out
}

func (g gen) directive() Directive {
	return Directive{
		ID:         []string{"a", "b", "c", "d"}[g.pick(4)],
		Patient:    "H|1",
		Effect:     []Effect{EffectPermit, EffectDeny, EffectPermit, EffectDeny, 0, 3}[g.pick(6)],
		Facilities: g.facilities(),
		Purposes:   g.purposes(),
		NotBefore:  g.time(),
		NotAfter:   g.time(),
		RecordedBy: "r",
	}
}

func (g gen) request() Request {
	r := Request{
		Facility: []string{"A", "B", "C"}[g.pick(3)],
		User:     "u",
		Purpose:  g.purpose(),
		Reason:   []string{"", " ", "stroke"}[g.pick(3)],
		Time:     t0.Add(time.Duration(g.pick(7)-3) * time.Hour),
	}
	switch g.pick(40) {
	case 0:
		r.Facility = []string{"", " "}[g.pick(2)]
	case 1:
		r.Time = time.Time{}
	}
	return r
}

func (g gen) policy() Policy {
	return Policy{
		Mode:            Mode([]uint8{1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 0, 3}[g.pick(12)]),
		DefaultPurposes: g.purposes(),
		BreakGlass:      g.pick(2) == 0,
	}
}

// TestDecideMatchesReference compares Decide with reference on random cases
// and checks properties that must hold whatever the inputs.
func TestDecideMatchesReference(t *testing.T) {
	const cases = 100_000
	g := gen{rand.New(rand.NewPCG(1, 2))}
	seen := map[Rule]int{}
	for i := range cases {
		req, pol := g.request(), g.policy()
		dirs := make([]Directive, g.pick(6))
		for j := range dirs {
			dirs[j] = g.directive()
		}
		got := Decide(req, dirs, pol)
		seen[got.Rule]++
		if want := reference(req, dirs, pol); got != want {
			t.Fatalf("case %d: Decide(%+v, %+v, %+v)\n = %+v\nreference %+v", i, req, dirs, pol, got, want)
		}

		// The order of the directives does not matter.
		shuffled := append([]Directive(nil), dirs...)
		g.r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if again := Decide(req, shuffled, pol); again != got {
			t.Fatalf("case %d: reordering the directives changed %+v to %+v", i, got, again)
		}

		// Break-glass only for an emergency with a reason, where allowed.
		if got.Outcome == BreakGlass && !(req.Purpose == EmergencyTreat && strings.TrimSpace(req.Reason) != "" && pol.BreakGlass) {
			t.Fatalf("case %d: break-glass without its conditions: %+v", i, req)
		}

		// An applicable deny never leaves access plainly permitted.
		blanket := Directive{ID: "z", Patient: "H|1", Effect: EffectDeny, RecordedBy: "r"}
		if d := Decide(req, append(dirs, blanket), pol); d.Outcome == Permit {
			t.Fatalf("case %d: permitted despite a blanket deny: %+v", i, d)
		}
	}
	// Every rule was reached often enough for the comparison to mean something.
	for _, r := range []Rule{RuleInvalidRequest, RuleInvalidPolicy, RuleDirectiveDeny, RuleDirectivePermit,
		RulePolicyOptOut, RulePolicyOptIn, RulePurposeNotCovered, RuleBreakGlass} {
		if seen[r] < cases/200 {
			t.Errorf("rule %s decided only %d of %d cases", r, seen[r], cases)
		}
	}
	t.Logf("decisions by rule: %v", seen)
}
