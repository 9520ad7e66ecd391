// Package dicomweb serves the node's archive to viewers and PACS over
// DICOMweb (PS3.18) under /dicom-web/: QIDO-RS for studies, series and
// instances (patient ID, issuer, name prefix, date or date range, modality,
// accession; limit and offset), WADO-RS for studies, series and instances
// as multipart/related application/dicom with the original bytes, and
// STOW-RS, whose every part passes the guarded parser and whose parts are
// committed per study, answering with the stored and failed instances.
// CORS headers are on every response, errors included.
//
// Every request goes through the Store, the node, which writes the audit
// record before it reads or writes anything; a request whose record cannot
// be written fails.
package dicomweb
