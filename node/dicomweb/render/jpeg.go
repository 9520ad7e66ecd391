package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
)

// jpeg decodes a JPEG baseline or 8-bit extended frame. The stream's frame
// header must agree with the dataset before image/jpeg allocates anything.
func (p Pixels) jpeg(frame []byte, w *Window) (image.Image, error) {
	if p.BitsAllocated != 8 || p.BitsStored > 8 {
		return nil, fmt.Errorf("%w: JPEG with %d bits stored", ErrUnsupported, p.BitsStored)
	}
	marker, h, err := frameHeader(frame)
	if err != nil {
		return nil, err
	}
	precision, rows, cols, comps := int(h[0]), int(h[1])<<8|int(h[2]), int(h[3])<<8|int(h[4]), int(h[5])
	switch {
	case marker != 0xC0 && marker != 0xC1: // progressive and lossless are other syntaxes
		return nil, fmt.Errorf("%w: JPEG process with frame marker 0x%X", ErrUnsupported, marker)
	case precision != 8:
		return nil, fmt.Errorf("%w: %d-bit JPEG", ErrUnsupported, precision)
	case cols != p.Columns || rows != p.Rows || comps != p.SamplesPerPixel:
		return nil, fmt.Errorf("render: JPEG is %d×%d with %d components, the dataset says %d×%d with %d samples",
			cols, rows, comps, p.Columns, p.Rows, p.SamplesPerPixel)
	}
	// Huffman-coded sequential JPEG spends at least two bits on each 8×8
	// block (a DC code and an end of block), so a stream too short for its
	// size is refused before the decoder allocates the whole image.
	if blocks := ((p.Columns + 7) / 8) * ((p.Rows + 7) / 8); len(frame)*4 < blocks {
		return nil, fmt.Errorf("render: JPEG of %d bytes is too short for %d×%d", len(frame), p.Columns, p.Rows)
	}
	img, err := jpeg.Decode(bytes.NewReader(frame))
	if err != nil {
		var unsupported jpeg.UnsupportedError
		if errors.As(err, &unsupported) {
			return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("render: decode JPEG: %w", err)
	}
	if img.Bounds() != image.Rect(0, 0, p.Columns, p.Rows) {
		return nil, fmt.Errorf("render: JPEG decoded to %v", img.Bounds())
	}
	switch m := img.(type) {
	case *image.Gray:
		// Window it like a native 8-bit frame.
		pix := make([]byte, 0, p.Rows*p.Columns)
		for y := range p.Rows {
			pix = append(pix, m.Pix[y*m.Stride:y*m.Stride+p.Columns]...)
		}
		q := p
		q.BitsStored = 8
		return q.native(pix, binary.LittleEndian, w)
	case *image.YCbCr:
		// image/jpeg leaves the components as coded; RGB means the encoder
		// did not transform them (PS3.5 8.2.1), so they are R, G and B.
		rgb := p.photometric() == "RGB"
		out := image.NewRGBA(img.Bounds())
		for y := range p.Rows {
			for x := range p.Columns {
				c := m.YCbCrAt(x, y)
				r, g, b := c.Y, c.Cb, c.Cr
				if !rgb {
					r, g, b = color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				}
				out.SetRGBA(x, y, color.RGBA{r, g, b, 255})
			}
		}
		return out, nil
	case *image.RGBA:
		return m, nil
	}
	return nil, fmt.Errorf("%w: JPEG decoded to %T", ErrUnsupported, img)
}

// frameHeader walks a JPEG stream's marker segments from SOI to the first
// frame header (SOFn) and returns its marker and body.
func frameHeader(b []byte) (byte, []byte, error) {
	if !bytes.HasPrefix(b, []byte{0xFF, 0xD8}) {
		return 0, nil, errors.New("render: frame is not a JPEG stream")
	}
	for i := 2; i+4 <= len(b) && b[i] == 0xFF; {
		m, n := b[i+1], int(b[i+2])<<8|int(b[i+3])
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xD9 || m == 0xDA || n < 2 || i+2+n > len(b):
			return 0, nil, errors.New("render: JPEG has no frame header")
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC: // not DHT, JPG, DAC
			if n < 8 {
				return 0, nil, errors.New("render: JPEG frame header is truncated")
			}
			return m, b[i+4 : i+2+n], nil
		}
		i += 2 + n
	}
	return 0, nil, errors.New("render: JPEG has no frame header")
}
