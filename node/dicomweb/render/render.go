package render

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"
)

// ErrUnsupported reports pixel data or an output format this package does
// not render: the caller may answer 406 Not Acceptable.
var ErrUnsupported = errors.New("render: unsupported")

// maxSide caps Rows and Columns, so no frame can ask for more than
// maxSide*maxSide*4 bytes of output.
const maxSide = 16384

const (
	implicitLE   = "1.2.840.10008.1.2"
	explicitLE   = "1.2.840.10008.1.2.1"
	explicitBE   = "1.2.840.10008.1.2.2"
	jpegBaseline = "1.2.840.10008.1.2.4.50"
	jpegExtended = "1.2.840.10008.1.2.4.51"
)

// Pixels describes a frame: the attributes of the Image Pixel module that
// rendering needs. High Bit is taken to be BitsStored-1.
type Pixels struct {
	Rows, Columns             int
	SamplesPerPixel           int    // 1 or 3
	BitsAllocated, BitsStored int    // 8 or 16 allocated
	PixelRepresentation       int    // 0 unsigned, 1 two's complement
	Photometric               string // MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422 (JPEG only)
	PlanarConfiguration       int    // 0 interleaved, 1 one plane per sample

	RescaleSlope, RescaleIntercept float64 // slope 0 means 1
	WindowCenter, WindowWidth      float64 // from the dataset; width <= 0 means absent

	TransferSyntax string // UID of the frame's transfer syntax
}

// Image renders frame, the bytes of exactly one frame (or, for JPEG, its
// compressed fragment bytes), to an *image.Gray for monochrome frames or
// an *image.RGBA for colour ones. The window of a monochrome frame is w if
// it is not nil, else the dataset's, else the full range of the frame's
// modality values; w is ignored for colour frames. Bytes beyond the frame's
// size are ignored; a frame shorter than its size is an error.
func Image(p Pixels, frame []byte, w *Window) (image.Image, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if w != nil {
		nw, err := w.normalize()
		if err != nil {
			return nil, err
		}
		w = &nw
	}
	switch strings.TrimSpace(p.TransferSyntax) {
	case implicitLE, explicitLE:
		return p.native(frame, binary.LittleEndian, w)
	case explicitBE:
		return p.native(frame, binary.BigEndian, w)
	case jpegBaseline, jpegExtended:
		return p.jpeg(frame, w)
	}
	return nil, fmt.Errorf("%w: transfer syntax %q", ErrUnsupported, p.TransferSyntax)
}

func (p *Pixels) photometric() string { return strings.TrimSpace(p.Photometric) }

// check refuses attributes that are inconsistent or out of bounds before
// anything is allocated.
func (p *Pixels) check() error {
	switch {
	case p.Rows < 1 || p.Columns < 1 || p.Rows > maxSide || p.Columns > maxSide:
		return fmt.Errorf("render: %d rows × %d columns is outside 1..%d", p.Rows, p.Columns, maxSide)
	case p.SamplesPerPixel != 1 && p.SamplesPerPixel != 3:
		return fmt.Errorf("%w: %d samples per pixel", ErrUnsupported, p.SamplesPerPixel)
	case p.BitsAllocated != 8 && p.BitsAllocated != 16:
		return fmt.Errorf("%w: %d bits allocated", ErrUnsupported, p.BitsAllocated)
	case p.BitsStored < 1 || p.BitsStored > p.BitsAllocated:
		return fmt.Errorf("render: %d bits stored in %d allocated", p.BitsStored, p.BitsAllocated)
	case p.PixelRepresentation != 0 && p.PixelRepresentation != 1:
		return fmt.Errorf("render: pixel representation %d", p.PixelRepresentation)
	case p.SamplesPerPixel == 3 && p.PlanarConfiguration != 0 && p.PlanarConfiguration != 1:
		return fmt.Errorf("render: planar configuration %d", p.PlanarConfiguration)
	case !finite(p.RescaleSlope) || !finite(p.RescaleIntercept):
		return fmt.Errorf("render: rescale slope %v, intercept %v", p.RescaleSlope, p.RescaleIntercept)
	}
	want := 1
	switch ph := p.photometric(); ph {
	case "MONOCHROME1", "MONOCHROME2":
	case "RGB", "YBR_FULL", "YBR_FULL_422":
		want = 3
	default:
		return fmt.Errorf("%w: photometric interpretation %q", ErrUnsupported, ph)
	}
	if p.SamplesPerPixel != want {
		return fmt.Errorf("render: %s with %d samples per pixel", p.photometric(), p.SamplesPerPixel)
	}
	return nil
}

// native renders an uncompressed frame whose 16-bit samples are in order.
func (p Pixels) native(frame []byte, order binary.ByteOrder, w *Window) (image.Image, error) {
	if p.photometric() == "YBR_FULL_422" {
		return nil, fmt.Errorf("%w: uncompressed YBR_FULL_422", ErrUnsupported)
	}
	n := p.Rows * p.Columns
	size := p.BitsAllocated / 8
	if need := n * p.SamplesPerPixel * size; len(frame) < need {
		return nil, fmt.Errorf("render: frame is %d bytes, %d rows × %d columns × %d samples × %d bits need %d",
			len(frame), p.Rows, p.Columns, p.SamplesPerPixel, p.BitsAllocated, need)
	}
	mask := uint32(1)<<p.BitsStored - 1
	sample := func(i int) uint32 { // the i-th sample in storage order
		if size == 1 {
			return uint32(frame[i]) & mask
		}
		return uint32(order.Uint16(frame[2*i:])) & mask
	}
	if p.SamplesPerPixel == 1 {
		return p.gray(sample, w), nil
	}
	return p.color(sample), nil
}

// gray windows a monochrome frame through a lookup table indexed by the
// masked stored value (at most 2^16 entries).
func (p Pixels) gray(sample func(int) uint32, w *Window) *image.Gray {
	n := p.Rows * p.Columns
	lut := make([]uint8, 1<<p.BitsStored)
	win := p.window(w, n, sample)
	invert := p.photometric() == "MONOCHROME1"
	for raw := range lut {
		y := toByte(win.apply(p.modality(uint32(raw))))
		if invert {
			y = 255 - y
		}
		lut[raw] = y
	}
	img := image.NewGray(image.Rect(0, 0, p.Columns, p.Rows))
	for i := range n {
		img.Pix[i] = lut[sample(i)]
	}
	return img
}

// modality sign-extends a masked stored value and applies the rescale.
func (p Pixels) modality(raw uint32) float64 {
	v := int64(raw)
	if p.PixelRepresentation == 1 && raw&(1<<(p.BitsStored-1)) != 0 {
		v -= 1 << p.BitsStored
	}
	slope := p.RescaleSlope
	if slope == 0 {
		slope = 1
	}
	return float64(v)*slope + p.RescaleIntercept
}

// window picks the override, else the dataset's window, else the one that
// maps the lowest modality value present to 0 and the highest to 255.
func (p Pixels) window(w *Window, n int, sample func(int) uint32) Window {
	if w != nil {
		return *w
	}
	if p.WindowWidth > 0 && finite(p.WindowWidth) && finite(p.WindowCenter) {
		return Window{Center: p.WindowCenter, Width: p.WindowWidth, Function: linear}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range n {
		m := p.modality(sample(i))
		lo, hi = min(lo, m), max(hi, m)
	}
	full := Window{Center: lo + (hi-lo)/2, Width: hi - lo, Function: linearExact}
	if !(full.Width > 0) { // one value throughout
		full.Width = 1
	}
	return full
}

// color converts an RGB or YBR_FULL frame, scaling samples to 8 bits.
func (p Pixels) color(sample func(int) uint32) *image.RGBA {
	n := p.Rows * p.Columns
	top := uint32(1)<<p.BitsStored - 1
	scale := func(v uint32) uint8 { return uint8((v*255 + top/2) / top) }
	ybr := p.photometric() == "YBR_FULL"
	img := image.NewRGBA(image.Rect(0, 0, p.Columns, p.Rows))
	for i := range n {
		var c [3]uint8
		for s := range c {
			j := 3*i + s
			if p.PlanarConfiguration == 1 {
				j = s*n + i
			}
			c[s] = scale(sample(j))
		}
		if ybr {
			c[0], c[1], c[2] = color.YCbCrToRGB(c[0], c[1], c[2])
		}
		copy(img.Pix[4*i:], []uint8{c[0], c[1], c[2], 255})
	}
	return img
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// toByte rounds and clamps to 0..255; NaN becomes 0.
func toByte(y float64) uint8 {
	if !(y > 0) {
		return 0
	}
	if y >= 255 {
		return 255
	}
	return uint8(y + 0.5)
}
