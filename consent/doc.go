// Package consent decides whether a facility may release a patient's studies
// to a requesting facility.
//
// The inputs are the patient's Directives (recorded in the federation
// registry: permit or deny, for all facilities or named ones, for all
// purposes of use or named ones, over a validity period, with who recorded
// them), the owning facility's Policy (opt-in or opt-out for a set of
// purposes, break-glass allowed or not) and the Request (requesting facility
// and user, purpose of use, reason, time). Decide returns a Decision: Permit,
// Deny or BreakGlass, with the Rule that decided and the directive involved,
// for the audit record.
//
// The rules, in order: a malformed request or policy is denied; an
// applicable deny directive beats any permit; an applicable permit directive
// permits; otherwise the policy decides. An emergency request (ETREAT with a
// reason) turns a deny into BreakGlass only where the policy allows it, and
// BreakGlass is always reported as such, never as Permit. Decisions do not
// depend on the order of the directives.
//
// Directive and Policy have canonical encodings (crypto/canon) whose decoders
// accept only values that pass Validate.
//
// Invariants: the package is pure. It performs no I/O, reads no clock (the
// request carries its time), draws no randomness and never logs.
package consent
