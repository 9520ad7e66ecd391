package part10

import (
	"encoding/binary"
	"fmt"
	"github.com/dicomesh/dicomesh/node/dicomweb/render"
	"strconv"
)

// Image Pixel module attributes.
const (
	tagSamplesPerPixel  = 0x00280002
	tagPhotometric      = 0x00280004
	tagNumberOfFrames   = 0x00280008
	tagPlanarConfig     = 0x00280006
	tagRows             = 0x00280010
	tagColumns          = 0x00280011
	tagBitsAllocated    = 0x00280100
	tagBitsStored       = 0x00280101
	tagPixelRepr        = 0x00280103
	tagWindowCenter     = 0x00281050
	tagWindowWidth      = 0x00281051
	tagRescaleIntercept = 0x00281052
	tagRescaleSlope     = 0x00281053
)

// Encapsulated reports whether a transfer syntax compresses pixel data.
func Encapsulated(ts string) bool {
	switch ts {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian:
		return false
	}
	return true
}

// Frames returns the instance's frames: for native pixel data each frame's
// bytes in the stored byte order; for encapsulated pixel data each frame's
// compressed bitstream.
func (in *Instance) Frames() ([][]byte, error) {
	pd, ok := in.Find(pixelData)
	if !ok {
		return nil, fmt.Errorf("the instance has no pixel data")
	}
	n := int(in.Num(tagNumberOfFrames, 1))
	if n < 1 {
		n = 1
	}
	if pd.Fragments != nil {
		return splitFragments(pd.Fragments, n)
	}
	rows, cols := int(in.Num(tagRows, 0)), int(in.Num(tagColumns, 0))
	spp, bits := int(in.Num(tagSamplesPerPixel, 1)), int(in.Num(tagBitsAllocated, 0))
	if rows <= 0 || cols <= 0 || spp <= 0 || bits <= 0 || bits%8 != 0 || rows > 1<<16 || cols > 1<<16 || spp > 4 || bits > 64 {
		return nil, fmt.Errorf("unsupported pixel layout: %dx%d, %d samples of %d bits", cols, rows, spp, bits)
	}
	size := rows * cols * spp * bits / 8
	if int64(size)*int64(n) > int64(len(pd.Value)) {
		return nil, fmt.Errorf("pixel data holds %d bytes, %d frames of %d declared", len(pd.Value), n, size)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = pd.Value[i*size : (i+1)*size]
	}
	return out, nil
}

// splitFragments joins the fragments of encapsulated pixel data into
// frames: by the basic offset table when there is one, else one fragment
// a frame when the counts agree, else everything is one frame.
func splitFragments(frags [][]byte, n int) ([][]byte, error) {
	if len(frags) < 2 {
		return nil, fmt.Errorf("encapsulated pixel data without fragments")
	}
	bot, data := frags[0], frags[1:]
	join := func(fs [][]byte) []byte {
		if len(fs) == 1 {
			return fs[0]
		}
		var b []byte
		for _, f := range fs {
			b = append(b, f...)
		}
		return b
	}
	switch {
	case len(bot) >= 4 && len(bot)%4 == 0:
		offsets := make([]int64, len(bot)/4)
		for i := range offsets {
			offsets[i] = int64(binary.LittleEndian.Uint32(bot[4*i:]))
		}
		var out [][]byte
		var pos int64 // offset of the fragment's item tag after the table
		k := 0
		for i, off := range offsets {
			if off != pos && i > 0 || i == 0 && off != 0 {
				return nil, fmt.Errorf("basic offset table entry %d (%d) is not at a fragment", i, off)
			}
			end := int64(-1)
			if i+1 < len(offsets) {
				end = offsets[i+1]
			}
			var fs [][]byte
			for k < len(data) && (end < 0 || pos < end) {
				fs = append(fs, data[k])
				pos += 8 + int64(len(data[k]))
				k++
			}
			if len(fs) == 0 {
				return nil, fmt.Errorf("basic offset table entry %d has no fragment", i)
			}
			out = append(out, join(fs))
		}
		return out, nil
	case n == 1:
		return [][]byte{join(data)}, nil
	case n == len(data):
		return data, nil
	}
	return nil, fmt.Errorf("%d frames in %d fragments without an offset table", n, len(data))
}

// Lookup follows a tag path: TAG, or TAG/ITEM/TAG and so on.
func Lookup(els []Element, path []string) (Element, bool) {
	t, err := strconv.ParseUint(path[0], 16, 32)
	if err != nil || len(path[0]) != 8 {
		return Element{}, false
	}
	for _, e := range els {
		if e.Tag != uint32(t) {
			continue
		}
		if len(path) == 1 {
			return e, e.VR != "SQ"
		}
		i, err := strconv.Atoi(path[1])
		if err != nil || i < 0 || i >= len(e.Items) || len(path) < 3 {
			return Element{}, false
		}
		return Lookup(e.Items[i], path[2:])
	}
	return Element{}, false
}

// Pixels describes an instance's frames for rendering.
func (in *Instance) Pixels() render.Pixels {
	return render.Pixels{
		Rows: int(in.Num(tagRows, 0)), Columns: int(in.Num(tagColumns, 0)),
		SamplesPerPixel: int(in.Num(tagSamplesPerPixel, 1)),
		BitsAllocated:   int(in.Num(tagBitsAllocated, 0)), BitsStored: int(in.Num(tagBitsStored, 0)),
		PixelRepresentation: int(in.Num(tagPixelRepr, 0)), Photometric: in.Str(tagPhotometric),
		PlanarConfiguration: int(in.Num(tagPlanarConfig, 0)),
		RescaleSlope:        in.Num(tagRescaleSlope, 1), RescaleIntercept: in.Num(tagRescaleIntercept, 0),
		WindowCenter: in.Num(tagWindowCenter, 0), WindowWidth: in.Num(tagWindowWidth, 0),
		TransferSyntax: in.TransferSyntax,
	}
}
