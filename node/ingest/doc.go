// Package ingest brings DICOM into the archive: single files, folders
// (recursively), DICOMDIR media copied to disk, and zip archives. Parse is
// the guarded parser that every other way in (STOW-RS, C-STORE) reuses.
//
// # The guard
//
// No byte reaches the DICOM parser (github.com/suyashkumar/dicom) before a
// pre-scan has walked the whole file, without allocating, the way the parser
// will read it:
//
//   - the 128-byte preamble and "DICM", then the file meta group in explicit
//     VR little endian; a File Meta Information Group Length, when present,
//     must be a 4-byte UL and match the group exactly;
//   - a Transfer Syntax UID the parser knows (it would read an unknown one as
//     big endian); explicit and implicit VR little endian, explicit VR big
//     endian and the compressed syntaxes are read, deflated is refused;
//   - every element: a VR the parser reads with the standard length form
//     (OV, SV and UV are refused), a defined length that fits in the bytes
//     that are really there, an undefined length only on sequences, UN and
//     encapsulated pixel data, which must start with a basic offset table;
//     items only inside sequences, delimiters with zero length;
//   - sequences nested at most MaxDepth (16) deep, at most MaxElements (2^20)
//     elements, items and fragments per file, at most MaxNumericBytes
//     (16 MiB) of binary numbers, which the parser widens fourfold.
//
// The parser then reads only the file meta and the top-level elements up to
// group 0020, where everything Parse extracts lives; pixel data and anything
// after are never handed to it. Parsing a file therefore allocates at most a
// small multiple of its size, and a crafted file cannot make it allocate in
// proportion to a length it merely declares. UIDs must be valid (PS3.5 9.1:
// digits and dots, at most 64 characters, no leading zeros), so that a UID
// can name a file on export.
//
// # Sizes
//
// Run reads each file into memory, at most Config.MaxFileBytes (2 GiB by
// default), checked against the bytes read, not the size announced. A zip
// entry is bounded the same way, and a zip's entries together by
// MaxZipBytes and by MaxZipRatio times the zip's own size (never below
// 64 MiB); the budget is reserved from the size an entry declares, which the
// zip reader enforces. Zip entries are read into memory, never extracted, so
// their names cannot reach outside. Files whose first bytes plainly are not
// DICOM are skipped after those bytes, whatever their size.
//
// # Outcomes
//
// Every file ends stored, duplicate (the archive already held it), skipped
// (not DICOM) or rejected. A rejection is a *RejectError wrapping one of the
// sentinels (ErrMalformed, ErrTooLarge, ...); the file is copied into a
// folder per run under Config.QuarantineDir, under its own name, with a line
// in reasons.txt, and the rest of the batch goes on. A DICOMDIR is an index,
// never an instance: the files it references are ingested first, matched
// case-insensitively as on ISO 9660 media and never through a symbolic link
// or outside its folder; a referenced file that is missing is rejected.
package ingest
