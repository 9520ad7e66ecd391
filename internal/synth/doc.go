// Package synth writes deterministic synthetic DICOM studies with real pixel
// data: a CT of N axial 512x512 16-bit slices, a multi-series MR, a CR. Files
// are DICOM Part 10, explicit VR little endian, with the patient, study,
// series, SOP common and image pixel modules filled in. Everything is a pure
// function of the Spec: the same Spec writes byte-identical files.
package synth
