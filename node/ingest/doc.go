// Package ingest brings DICOM into the archive: single files, folders
// (recursively), DICOMDIR media copied to disk and zip archives.
//
// Every file passes a bounded pre-scan (Guard) before the DICOM parser sees
// it: the Part 10 header must be present, every declared element length must
// fit in the bytes that are actually there, sequences may nest at most
// MaxDepth deep, and a file may hold at most MaxElements elements. Only then
// is the dataset parsed (github.com/suyashkumar/dicom, pixel data skipped), so
// a crafted file cannot make the parser allocate more than the file's size.
// UIDs must be valid (PS3.5 9.1) since they name files on export.
//
// A rejected file gets a per-file reason, is copied aside into the quarantine
// folder and the rest of the batch goes on; files that are not DICOM at all
// are skipped and counted.
package ingest
