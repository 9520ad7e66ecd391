// Package audit is a facility node's tamper-evident audit log.
//
// # Records
//
// One Record per event, with the fields of an ATNA audit message and a FHIR
// AuditEvent (IHE BALP): the DICOM event code (Event, e.g. 110110 Patient
// Record, 110106 Export), an optional event type code, the action (C, R, U,
// D, E), the outcome (success, minor, serious or major failure, denied), the
// time (UTC, from Config.Now), the user and the facility they act from, the
// peer facility, the patient (issuer-qualified ID locally, token across
// facilities), the study, the purpose of use, a break-glass reason and the
// query text. A record is stored as its canonical encoding (crypto/canon),
// so its bytes, and so its hash, are a function of its value.
//
// # Integrity
//
// Records are the leaves of an RFC 6962 Merkle tree (transparency-dev/merkle
// hashing; the tree's complete subtrees are kept in memory, so appends are
// O(log n)). The node signs checkpoints in the c2sp.org/tlog-checkpoint
// format as c2sp.org/signed-note notes with its facility Ed25519 key: every
// Config.CheckpointEvery records, when Open finds unsigned records, on
// Close and on demand (Log.Checkpoint). Config.OnCheckpoint hands each new
// checkpoint to the node, which anchors it in the registry; Anchor is how
// Verify reads the anchored ones back. InclusionProof and ConsistencyProof
// serve RFC 6962 proofs; VerifyConsistency checks that one checkpoint
// extends another.
//
// # Fail-closed contract
//
// Append returns only once the record is durable (fsynced; concurrent
// appends share an fsync). A caller must not carry out the operation it
// audits unless Append returned nil: no audit, no access. After a failed
// write or sync the Log refuses every later record (ErrFailed) until it is
// reopened. Reads of the log (Search, Flags, Export, Log.Verify) first
// append an "Audit Log Used" (110101) record naming the reader, and return
// nothing if that fails.
//
// # Files and crash recovery
//
// Config.Dir holds "log" (a header line, then one frame per record: a
// 4-byte length, the canonical record, a CRC-32C), "checkpoints" (the
// signed notes, framed the same way), "leaves" (per record, the frame
// offset and leaf hash: a cache that makes Open fast; never trusted for
// integrity) and "torn" (tails cut off by recovery, kept for inspection).
//
// Append writes a frame with one write and acknowledges it after fsync, so
// a crash can leave only an incomplete last frame (or a zero-filled tail
// after a power loss): that write was never acknowledged and Open cuts it
// off. A complete frame whose checksum fails, a record that does not
// decode, fewer records than a checkpoint signs, or records that do not
// hash to a signed root are not crash damage: Open refuses the log with a
// *TamperError and changes nothing. A frame checksum catches accidental
// damage; the Merkle tree and the signatures catch deliberate changes.
//
// # Verify
//
// Verify (offline, on the files) and VerifyData (on their contents) read
// every record, recompute leaves and roots, verify every checkpoint's
// signature (local and anchored), report checkpoints that shrink or fork,
// and compare each checkpoint with the root of the records it signs. The
// report names the first bad record and why; when the leaves cache agrees
// with a signed root it also names the exact record that differs, otherwise
// the range between two checkpoints.
//
// # Search, flags, export
//
// Search selects records by patient, user, facility, purpose, event,
// action, outcome, break-glass and date range from an in-memory index built
// on first use (about 60 bytes per record); results are read from the file
// and checked against the tree. Flags reports break-glass access, access
// outside working hours, bulk access by one user, denied requests and the
// first access from a new facility. Export writes CSV (RFC 4180, UTF-8
// with a byte order mark for spreadsheets, formula cells neutralised), FHIR
// R4 AuditEvent NDJSON (IHE BALP patterns: an export or import with a peer
// is a privacy disclosure naming the same source and recipient at both
// ends) or DICOM PS3.15 audit messages (patient IDs in HL7 CX form). The
// tests check the FHIR export against the R4 AuditEvent elements and the
// official R4 and BALP examples in testdata/, and the DICOM export against
// the PS3.15 schema.
// Handler serves all of it as JSON under /api/v1/audit/.
//
// The package never logs record contents; its errors name indices, offsets
// and field names, never values.
package audit
