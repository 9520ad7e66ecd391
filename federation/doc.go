// Package federation holds the libp2p protocols between facility nodes that
// are not about blocks or access (those are federation/blocks and
// federation/access): membership and connection gating, Raft's transport,
// and the request-response protocols of the registry (forwarding a signed
// command to the leader, linearizable reads, and joining by invitation).
//
// Members is the set of admitted facilities, fed by the node from its
// registry replica, with a time-bounded join window. Gater refuses, once
// Noise has authenticated the remote peer, connections from peers that are
// neither members, nor peers this node dials to join, nor newcomers while
// a join window is open. Every handler checks membership again before it
// reads a byte, so a newcomer inside the window reaches the join protocol
// and nothing else.
//
// StreamLayer is a raft.StreamLayer on /dicomesh/raft/1.0.0: a raft server
// address is a peer id, so Raft inherits libp2p's peer authentication, and
// raft peers are protected in the connection manager. It is a hundred lines
// written here, so that accepting checks membership, rather than
// go-libp2p-raft, whose consensus wrapper the registry does not need.
//
// Serve and Call carry one request and one answer per stream, each a
// length-prefixed frame whose length is checked against a hard limit before
// anything is allocated; streams have deadlines and reserve their memory
// with the resource manager. The payloads are opaque here: the node gives
// them meaning (registry commands and results, join requests).
package federation
