// Package dicomweb serves the node's archive to viewers and PACS over
// DICOMweb (PS3.18) under /dicom-web/:
//
//   - QIDO-RS for studies, series and instances: patient ID and issuer,
//     patient name (prefix, * and ? wildcards, fuzzymatching on name
//     components), study date or range, modalities, accession, UID lists,
//     series and instance keys; limit and offset; includefield, whose
//     attributes the index does not hold are read from the first instance
//     of the entity. Other matching keys are ignored with a Warning header;
//     an answer holds at most 1,000 results, with a Warning when cut.
//   - WADO-RS: studies, series and instances as multipart/related
//     application/dicom with the original bytes; metadata in the DICOM JSON
//     model with bulk data by reference (bulk/TAG); frames as
//     multipart/related in the stored transfer syntax (OHIF's
//     transfer-syntax=*), nothing transcoded; rendered frames and
//     thumbnails as JPEG or PNG with the window, viewport and quality
//     parameters.
//   - STOW-RS, whose every part passes the guarded parser and is stored
//     by a few workers while the rest of the body arrives; each study is
//     committed once the body is read (a body that breaks off commits
//     nothing), and the answer lists the stored and failed instances.
//
// CORS headers are on every response, errors included. Received studies
// are served reconciled to the local patient: the store hands out the
// reconciled bytes.
//
// Every request goes through the Store, the node, which writes the audit
// record before it reads or writes anything; a request whose record cannot
// be written fails.
package dicomweb
