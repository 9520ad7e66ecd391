// Package crypto holds dicomesh's key material and the pure cryptographic
// operations built on it: facility identities (Ed25519 signing key, which is
// also the libp2p peer identity, plus an age X25519 recipient), per-study keys
// and their sealing to recipients, domain-separated signatures, the canonical
// encoding of everything that is signed, and patient tokens.
//
// Invariants: the package performs no I/O (it reads and writes only the
// io.Reader and io.Writer values it is handed), reads no clock and never logs.
// Randomness is an argument, except where age draws its own from crypto/rand.
// Secret material is never formatted by String or LogValue methods.
package crypto
