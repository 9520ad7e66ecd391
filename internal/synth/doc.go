// Package synth generates deterministic synthetic DICOM studies with real
// pixel data, for tests, demos and benchmarks.
//
// Three presets stand for what a facility exchanges every day:
//
//   - ct: N axial slices (400 by default) of 512x512 16-bit signed pixels,
//     a body phantom (fat, muscle, lungs, heart, liver, kidneys, spine,
//     pelvis, table, noise) in Hounsfield units stored with a rescale
//     intercept of -1024; about 525 KB a slice, 210 MB for 400.
//   - mr: a brain in four series (T1 ax, T2 ax, FLAIR ax, T1 sag) of
//     256x256 16-bit unsigned images (12 bits stored), each with its own
//     contrast and Rician noise.
//   - cr: 1024x1024 chest radiographs (posteroanterior, then lateral).
//
// Files are DICOM Part 10, explicit VR little endian, written by this
// package's own small encoder: a file meta group with a correct group
// length, then the patient, general study, general series, frame of
// reference, equipment, general image, image plane, image pixel, the
// modality's image module and SOP common, in ascending tag order.
// dicom3tools' dciodvfy reports no errors on any preset.
//
// Invariants:
//
//   - Everything is a pure function of the Spec: the same Spec yields
//     byte-identical files and manifest, whatever the number of CPUs. UIDs
//     are 2.25.<decimal> (at most 42 characters) derived from the seed and
//     the preset, so two studies need two seeds.
//   - Instances are built in parallel but delivered in order; the callback
//     runs on one goroutine at a time, may keep the slice it is given, and
//     stops generation by returning an error. No goroutine outlives a call.
//   - Spec.Validate bounds every value a caller controls (sizes, dates,
//     text against its VR); an invalid Spec yields an error wrapping
//     ErrSpec before anything is generated or written.
//   - Names are written as given; non-ASCII text switches the Specific
//     Character Set to ISO_IR 192 (UTF-8), otherwise it is ISO_IR 100.
//
// Write puts the files at DIR/<series#>/<instance#>.dcm and a manifest.json
// (Manifest: UIDs, sizes and SHA-256 of every file) beside them; Instances
// streams the same bytes without touching the disk.
package synth
