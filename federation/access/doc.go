// Package access is the protocol by which a facility asks another for a
// study and the owner answers: /dicomesh/access/1.0.0, one signed Request
// and one signed Response per stream.
//
// A Request names the federation, the requesting facility, the owner it is
// meant for, the user, the purpose of use, the manifests wanted, a 16-byte
// nonce, the time, and a break-glass reason when the user invokes one. It is
// signed by the requesting facility in its own domain.
//
// The owner's Checker refuses, before any consent decision, a request that
// does not decode, whose signature does not verify, that was signed by
// another facility than the peer that sent it, whose requester is not an
// active member, that is meant for another owner or federation, whose time
// is outside the window around the owner's clock, or whose nonce was seen
// within that window. Streams from peers that are not members are reset
// unread. The Handler (the node) is told of every refusal, to audit it, and
// decides the rest: consent, the audit record first (no audit, no access),
// then a Response naming the request by hash, with a reason, and for a grant
// each study key sealed to the requester's recipient and an expiry.
//
// The requester verifies the response: signed by the owner in the response
// domain, answering this very request, well formed and, when granted, not
// expired. Frames are length-prefixed with hard limits checked before any
// allocation; every stream has a deadline and a memory reservation.
//
// Decisions read the clock only through CheckConfig.Now (stream deadlines
// use the system clock), and the package never logs.
package access
