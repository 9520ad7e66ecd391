package consent

import "fmt"

// Outcome is the result of a consent decision.
type Outcome uint8

// Outcomes. BreakGlass grants access like Permit but must be flagged
// wherever the access is recorded.
const (
	Deny       Outcome = 1
	Permit     Outcome = 2
	BreakGlass Outcome = 3
)

func (o Outcome) String() string {
	switch o {
	case Deny:
		return "deny"
	case Permit:
		return "permit"
	case BreakGlass:
		return "break-glass"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Rule names what decided. The names are stable: they go into audit records.
type Rule string

// Rules.
const (
	RuleInvalidRequest    Rule = "invalid-request"     // deny: the request is malformed
	RuleInvalidPolicy     Rule = "invalid-policy"      // deny: the facility policy is malformed
	RuleDirectiveDeny     Rule = "directive-deny"      // deny: a directive denies
	RuleDirectivePermit   Rule = "directive-permit"    // permit: a directive permits and none denies
	RulePolicyOptOut      Rule = "policy-opt-out"      // permit: no directive applies, opt-out covers the purpose
	RulePolicyOptIn       Rule = "policy-opt-in"       // deny: no directive applies, opt-in covers the purpose
	RulePurposeNotCovered Rule = "purpose-not-covered" // deny: no directive applies, the policy does not cover the purpose
	RuleBreakGlass        Rule = "break-glass"         // break-glass: an emergency overrode the deny in Overridden
)

// Decision is the outcome of Decide and the rule that produced it.
type Decision struct {
	Outcome Outcome
	Rule    Rule
	// Directive is the ID of the directive that decided (for RuleDirectiveDeny,
	// RuleDirectivePermit, and RuleBreakGlass over a directive), else "". When
	// several apply, it is the smallest ID, so the decision does not depend
	// on the order of the directives.
	Directive string
	// Overridden is the deny rule that break-glass overrode, else "".
	Overridden Rule
}

// Allowed reports whether access may go ahead (Permit or BreakGlass).
func (d Decision) Allowed() bool { return d.Outcome == Permit || d.Outcome == BreakGlass }

// Err returns nil when access is allowed, else an error wrapping ErrDenied
// that names the rule and directive.
func (d Decision) Err() error {
	switch {
	case d.Allowed():
		return nil
	case d.Directive != "":
		return fmt.Errorf("%w: %s (directive %s)", ErrDenied, d.Rule, d.Directive)
	}
	return fmt.Errorf("%w: %s", ErrDenied, d.Rule)
}

// Decide evaluates an access request against the patient's directives and
// the owning facility's policy, failing closed:
//
//  1. A malformed request or policy is denied.
//  2. A directive applies when the request's facility, purpose and time fall
//     within its scope. A directive with an unknown effect counts as a deny.
//  3. If any applicable directive denies, access is denied: explicit deny
//     beats permit.
//  4. Otherwise, if any applicable directive permits, access is permitted.
//  5. Otherwise the policy decides: opt-out permits and opt-in denies the
//     purposes it covers; other purposes are denied.
//  6. A deny from steps 3 or 5 becomes BreakGlass when the request is for
//     ETREAT with a non-blank reason and the policy allows break-glass.
//
// Decide does no I/O and reads no clock: the request carries its time.
func Decide(req Request, directives []Directive, policy Policy) Decision {
	if req.Validate() != nil {
		return Decision{Outcome: Deny, Rule: RuleInvalidRequest}
	}
	if policy.Validate() != nil {
		return Decision{Outcome: Deny, Rule: RuleInvalidPolicy}
	}
	var deny, permit string
	var denied, permitted bool
	for i := range directives {
		d := &directives[i]
		if !d.appliesTo(req) {
			continue
		}
		if d.Effect == EffectPermit {
			if !permitted || d.ID < permit {
				permit, permitted = d.ID, true
			}
		} else if !denied || d.ID < deny {
			deny, denied = d.ID, true
		}
	}
	var dec Decision
	switch {
	case denied:
		dec = Decision{Outcome: Deny, Rule: RuleDirectiveDeny, Directive: deny}
	case permitted:
		return Decision{Outcome: Permit, Rule: RuleDirectivePermit, Directive: permit}
	case !covers(policy, req.Purpose):
		dec = Decision{Outcome: Deny, Rule: RulePurposeNotCovered}
	case policy.Mode == OptOut:
		return Decision{Outcome: Permit, Rule: RulePolicyOptOut}
	default:
		dec = Decision{Outcome: Deny, Rule: RulePolicyOptIn}
	}
	if policy.BreakGlass && req.breaksGlass() {
		dec.Outcome, dec.Overridden, dec.Rule = BreakGlass, dec.Rule, RuleBreakGlass
	}
	return dec
}

func covers(p Policy, purpose Purpose) bool {
	for _, x := range p.DefaultPurposes {
		if x == purpose {
			return true
		}
	}
	return false
}
