// Package render turns one frame of DICOM pixel data into an 8-bit image
// for the DICOMweb WADO-RS rendered and thumbnail resources (PS3.18 8.3.5
// and 9.5), and encodes it as JPEG or PNG.
//
// A grayscale frame goes through the standard pipeline: stored values are
// masked to Bits Stored and sign-extended, rescaled to modality values with
// Rescale Slope and Intercept, mapped to 0..255 by a window (PS3.3
// C.11.2.1.2: linear, linear-exact or sigmoid) and inverted when the
// Photometric Interpretation is MONOCHROME1. The window is the caller's
// override, else the dataset's, else the full range of the frame's values.
// RGB and YBR_FULL frames are converted to RGB and not windowed.
//
// Native little and big endian frames are read directly; JPEG baseline and
// 8-bit extended frames are decoded with image/jpeg. Anything else, such as
// other compressed transfer syntaxes, PALETTE COLOR or 1-bit pixels, is
// refused with ErrUnsupported so the caller can answer 406 or fall back.
//
// Input is not trusted: dimensions are capped, a frame is checked against
// its declared size before it is read, and a JPEG stream's own header must
// match the dataset's rows, columns and samples before it is decoded.
package render
