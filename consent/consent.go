package consent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrDenied is wrapped by Decision.Err when access is denied.
var ErrDenied = errors.New("consent: access denied")

// ErrInvalid reports a directive or policy that breaks the rules of Validate.
var ErrInvalid = errors.New("consent: invalid")

// Purpose is a purpose of use, from the HL7 v3 PurposeOfUse code system.
type Purpose string

// Purposes of use that dicomesh knows. ETREAT is the one that may break the
// glass.
const (
	Treat          Purpose = "TREAT"   // treatment
	EmergencyTreat Purpose = "ETREAT"  // emergency treatment
	CareCoord      Purpose = "COC"     // coordination of care
	Payment        Purpose = "HPAYMT"  // healthcare payment
	Operations     Purpose = "HOPERAT" // healthcare operations
	Research       Purpose = "HRESCH"  // healthcare research
	PublicHealth   Purpose = "PUBHLTH" // public health
	PatientRequest Purpose = "PATRQT"  // requested by the patient
	Legal          Purpose = "HLEGAL"  // legal
)

var purposes = []Purpose{Treat, EmergencyTreat, CareCoord, Payment, Operations, Research, PublicHealth, PatientRequest, Legal}

// Purposes returns every known purpose of use.
func Purposes() []Purpose { return slices.Clone(purposes) }

// Valid reports whether p is a known purpose of use.
func (p Purpose) Valid() bool { return slices.Contains(purposes, p) }

// Effect is what a directive does when it applies.
type Effect uint8

// Directive effects.
const (
	EffectPermit Effect = 1
	EffectDeny   Effect = 2
)

func (e Effect) String() string {
	switch e {
	case EffectPermit:
		return "permit"
	case EffectDeny:
		return "deny"
	}
	return fmt.Sprintf("Effect(%d)", uint8(e))
}

// Directive is a patient's consent directive: it permits or denies access to
// the patient's studies by some facilities, for some purposes, over a period.
// Directives are recorded in the federation registry; the caller of Decide
// passes those of the patient (and of identities linked to the patient).
type Directive struct {
	ID         string    // unique within the federation
	Patient    string    // issuer-qualified patient ID, "issuer|id"
	Effect     Effect    // EffectPermit or EffectDeny
	Facilities []string  // requesting facilities it applies to, sorted; none means all
	Purposes   []Purpose // purposes it applies to, sorted; none means all
	NotBefore  time.Time // applies from this instant; zero means always
	NotAfter   time.Time // applies until just before this instant; zero means forever
	RecordedBy string    // who recorded it: user and facility, as the recording node names them
	RecordedAt time.Time
}

// Normalize sorts and deduplicates the facility and purpose lists, the form
// Validate demands, so that one directive has one encoding.
func (d *Directive) Normalize() {
	slices.Sort(d.Facilities)
	d.Facilities = slices.Compact(d.Facilities)
	slices.Sort(d.Purposes)
	d.Purposes = slices.Compact(d.Purposes)
}

// Validate checks that d is well formed: ID, patient and recorder given, a
// known effect, known purposes, sorted lists without duplicates or empty
// facility names, times after 1970 (they are kept to the millisecond) and a
// period that is not empty.
func (d *Directive) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("directive %q: %s: %w", d.ID, fmt.Sprintf(format, args...), ErrInvalid)
	}
	switch {
	case strings.TrimSpace(d.ID) == "":
		return bad("no id")
	case strings.TrimSpace(d.Patient) == "":
		return bad("no patient")
	case d.Effect != EffectPermit && d.Effect != EffectDeny:
		return bad("effect %d", d.Effect)
	case strings.TrimSpace(d.RecordedBy) == "":
		return bad("no recorder")
	}
	for i, f := range d.Facilities {
		if strings.TrimSpace(f) == "" {
			return bad("empty facility")
		}
		if i > 0 && d.Facilities[i-1] >= f {
			return bad("facilities not sorted and unique")
		}
	}
	for i, p := range d.Purposes {
		if !p.Valid() {
			return bad("unknown purpose %q", p)
		}
		if i > 0 && d.Purposes[i-1] >= p {
			return bad("purposes not sorted and unique")
		}
	}
	for _, t := range []time.Time{d.NotBefore, d.NotAfter, d.RecordedAt} {
		if !t.IsZero() && t.UnixMilli() <= 0 {
			return bad("time before 1970")
		}
	}
	if !d.NotBefore.IsZero() && !d.NotAfter.IsZero() && d.NotBefore.UnixMilli() >= d.NotAfter.UnixMilli() {
		return bad("empty period")
	}
	return nil
}

// appliesTo reports whether d is in scope for req: its facilities, purposes
// and period include the request's.
func (d *Directive) appliesTo(req Request) bool {
	if len(d.Facilities) > 0 && !slices.Contains(d.Facilities, req.Facility) {
		return false
	}
	if len(d.Purposes) > 0 && !slices.Contains(d.Purposes, req.Purpose) {
		return false
	}
	if !d.NotBefore.IsZero() && req.Time.Before(d.NotBefore) {
		return false
	}
	if !d.NotAfter.IsZero() && !req.Time.Before(d.NotAfter) {
		return false
	}
	return true
}

// Mode is a facility's default for patients without an applicable directive.
type Mode uint8

// Default modes.
const (
	OptIn  Mode = 1 // deny unless a directive permits
	OptOut Mode = 2 // permit, for the default purposes, unless a directive denies
)

func (m Mode) String() string {
	switch m {
	case OptIn:
		return "opt-in"
	case OptOut:
		return "opt-out"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Policy is the owning facility's consent policy.
type Policy struct {
	Mode Mode
	// DefaultPurposes are the purposes that Mode covers. A request for any
	// other purpose is denied unless a directive permits it.
	DefaultPurposes []Purpose
	// BreakGlass lets an emergency request (purpose ETREAT with a reason)
	// override a deny. Such access is always flagged.
	BreakGlass bool
}

// DefaultPolicy is opt-out for treatment, emergency treatment and
// coordination of care, with break-glass allowed: the sharing for care that
// dicomesh exists for, with every other purpose needing the patient's
// permit. Facilities whose law or rules demand opt-in say so.
func DefaultPolicy() Policy {
	return Policy{Mode: OptOut, DefaultPurposes: []Purpose{Treat, EmergencyTreat, CareCoord}, BreakGlass: true}
}

// Validate checks that p has a known mode and known default purposes.
func (p Policy) Validate() error {
	if p.Mode != OptIn && p.Mode != OptOut {
		return fmt.Errorf("policy: mode %d: %w", p.Mode, ErrInvalid)
	}
	for _, pu := range p.DefaultPurposes {
		if !pu.Valid() {
			return fmt.Errorf("policy: unknown purpose %q: %w", pu, ErrInvalid)
		}
	}
	return nil
}

// Request is an access request as the owning facility sees it.
type Request struct {
	Facility string    // requesting facility
	User     string    // requesting user, for the record
	Purpose  Purpose   // purpose of use
	Reason   string    // the justification, required to break the glass
	Time     time.Time // when the request was made
}

// Validate checks that r names a facility, a known purpose and a time.
func (r Request) Validate() error {
	switch {
	case strings.TrimSpace(r.Facility) == "":
		return fmt.Errorf("request: no facility: %w", ErrInvalid)
	case !r.Purpose.Valid():
		return fmt.Errorf("request: unknown purpose %q: %w", r.Purpose, ErrInvalid)
	case r.Time.IsZero():
		return fmt.Errorf("request: no time: %w", ErrInvalid)
	}
	return nil
}

// breaksGlass reports whether r is an emergency request with a reason.
func (r Request) breaksGlass() bool {
	return r.Purpose == EmergencyTreat && strings.TrimSpace(r.Reason) != ""
}
