// Package crypto holds dicomesh's key material and the pure cryptographic
// operations built on it.
//
//   - Identity: a facility's Ed25519 signing key (also its libp2p peer
//     identity) and its age X25519 identity, in a text file form
//     (MarshalText, ParseIdentity). Sign and Verify are domain-separated, so a
//     signature made for one kind of message never verifies as another.
//   - Envelope: a body signed in a domain, with a canonical encoding
//     (crypto/canon). Verify fails with ErrBadSignature.
//   - StudyKey: the per-study age identity a study's blocks are encrypted to.
//     Access is granted by sealing it to a recipient (Seal, OpenStudyKey);
//     decrypting with the wrong key fails with ErrNotRecipient. The C2SP age
//     test vectors are run through the same decryption path.
//   - SymmetricKey: an age recipient and identity for a 32-byte secret (a
//     "dicomesh-sym" stanza: the file key under XChaCha20-Poly1305). A study
//     key encrypts its objects to one derived from it, which spares an X25519
//     exchange per object; the DIMSE spool uses one per association.
//   - Token: a patient token, HMAC-SHA-256 under the federation's LinkageKey
//     over normalized patient fields (PatientTokens, NormalizeName, Phonetic
//     ...). The byte format is pinned by testdata/tokens.json, whose expected
//     values come from an independent implementation (testdata/tokens.py).
//
// Invariants: the package performs no I/O (it reads and writes only the
// io.Reader and io.Writer values it is handed), reads no clock and never logs.
// Randomness is an argument, except where age draws its own from crypto/rand
// (and SymmetricKey, an age recipient, its wrap nonces).
// Secret material is never formatted: Identity, StudyKey and LinkageKey print
// only public names.
package crypto
