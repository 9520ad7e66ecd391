// Package node is the composition root of a dicomesh facility node: it owns
// the home directory (keys, configuration, archive, audit log), opens the
// stores and, as the node grows, builds the libp2p host, the Raft replica of
// the registry and the servers. Every other package receives what it needs
// from here as arguments; nothing below node imports it.
//
// Invariants: secrets are written 0600 inside 0700 directories and the node
// refuses to load them when group or others can read them; files that must
// survive a crash are written to a temporary file, synced and renamed.
package node
