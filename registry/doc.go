// Package registry is the federation's replicated state: the facilities
// that are members, the manifests of their studies, patients' consent
// directives, identity links, anchored audit checkpoints, disclosures and
// holdings. Every member keeps a full replica through hashicorp/raft; FSM
// is the state machine.
//
// # Commands
//
// A change is a Command signed by the facility that issues it
// (crypto.Envelope in CommandDomain) and carried in the Raft log as Signed
// bytes: its kind, the federation id, the signer's facility id (the libp2p
// peer id of its Ed25519 key), a 16-byte idempotency key, the issuer's time
// and the kind's payload, all in the canonical encoding (crypto/canon).
//
// The FSM verifies each command's signature against the signer's key in its
// own state and rejects unknown, suspended and departed signers; only
// CreateFederation, on an empty state, is signed by a facility the state
// does not know yet (the founder). AdmitFacility carries a member's signed,
// expiring, single-use Invitation, the newcomer's record with the
// federation Secrets sealed to its recipient, and the newcomer's proof that
// it holds its key. A rejection is a Result with a Code and a reason,
// identical on every replica, never a panic. An idempotency key is applied
// once: a retry within a day of command time returns the first result,
// marked Duplicate.
//
// # Determinism
//
// The FSM reads no clock and no randomness: time comes in the command, and
// windows (idempotency keys, used invitations) are measured in command
// time. Maps never leak their order: the state's canonical encoding (the
// snapshot) writes every collection sorted, so replicas that applied the
// same log hold byte-identical snapshots, and Restore then Snapshot gives
// the same bytes.
//
// # Privacy
//
// Nothing readable about a patient enters the log: manifests carry blinded
// patient tokens (crypto.PatientTokens) and a Locator sealed to the
// federation's directory key; directives name their patient by token.
//
// # Reads
//
// Queries (Facilities, Lookup, Holders, Directives, ...) read the local
// replica and may be stale on a follower. ReadBarrier makes a read on the
// leader linearizable: it confirms leadership with a quorum and waits until
// everything committed is applied.
package registry
