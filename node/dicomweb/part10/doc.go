// Package part10 reads stored Part 10 instances for DICOMweb: Parse splits
// a file into its elements (implicit and explicit VR, little and big
// endian, nested sequences of defined and undefined length, encapsulated
// pixel data), Instance.JSON renders them in the DICOM JSON model of
// PS3.18 F.2 with bulk data by reference, and Instance.Frames cuts the
// pixel data into frames, by the basic offset table when there is one.
//
// The instances passed the node's guarded parser when they came in; they
// are still read as untrusted bytes: every length is checked against what
// is there, nesting depth and element counts are bounded, and nothing is
// allocated in proportion to a declared length. The package imports
// nothing that does I/O, so its fuzz target runs at full speed.
package part10
