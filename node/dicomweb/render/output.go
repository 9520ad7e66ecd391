package render

import (
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
)

// Fit scales img down, never up, to fit within maxW × maxH, keeping its
// aspect ratio, with a box filter. A bound of 0 or less does not limit its
// dimension. The result is img itself when it already fits.
func Fit(img image.Image, maxW, maxH int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	nw, nh := fitSize(w, h, maxW, maxH)
	if nw == w && nh == h {
		return img
	}
	if g, ok := img.(*image.Gray); ok {
		dst := image.NewGray(image.Rect(0, 0, nw, nh))
		box(dst.Pix, dst.Stride, g.Pix[g.PixOffset(b.Min.X, b.Min.Y):], g.Stride, 1, w, h, nw, nh)
		return dst
	}
	src, ok := img.(*image.RGBA)
	if !ok {
		src = image.NewRGBA(b)
		draw.Draw(src, b, img, b.Min, draw.Src)
	}
	dst := image.NewRGBA(image.Rect(0, 0, nw, nh))
	box(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, 4, w, h, nw, nh)
	return dst
}

// fitSize is the largest size within maxW × maxH, and no larger than
// w × h, with the aspect ratio of w × h (rounded, at least 1 × 1).
func fitSize(w, h, maxW, maxH int) (int, int) {
	if w <= 0 || h <= 0 {
		return w, h
	}
	if maxW <= 0 || maxW > w {
		maxW = w
	}
	if maxH <= 0 || maxH > h {
		maxH = h
	}
	if w*maxH <= h*maxW { // the height is the tighter bound
		return max(1, (w*maxH+h/2)/h), maxH
	}
	return maxW, max(1, (h*maxW+w/2)/w)
}

// box averages each destination pixel over the source pixels it covers;
// ch is the number of bytes per pixel and nw <= w, nh <= h.
func box(dst []byte, dstStride int, src []byte, srcStride, ch, w, h, nw, nh int) {
	for y := range nh {
		y0, y1 := y*h/nh, (y+1)*h/nh
		for x := range nw {
			x0, x1 := x*w/nw, (x+1)*w/nw
			var sum [4]int
			for sy := y0; sy < y1; sy++ {
				row := src[sy*srcStride:]
				for i := x0 * ch; i < x1*ch; i++ {
					sum[i%ch] += int(row[i])
				}
			}
			n := (y1 - y0) * (x1 - x0)
			for c := range ch {
				dst[y*dstStride+x*ch+c] = uint8((sum[c] + n/2) / n)
			}
		}
	}
}

// Encode writes img as mediaType, image/jpeg (quality 1..100, 0 meaning
// 90) or image/png (quality ignored). Other media types are ErrUnsupported.
func Encode(w io.Writer, img image.Image, mediaType string, quality int) error {
	switch strings.ToLower(strings.TrimSpace(mediaType)) {
	case "image/jpeg":
		if quality == 0 {
			quality = 90
		}
		if quality < 1 || quality > 100 {
			return fmt.Errorf("render: JPEG quality %d is outside 1..100", quality)
		}
		return jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
	case "image/png":
		return png.Encode(w, img)
	}
	return fmt.Errorf("%w: media type %q", ErrUnsupported, mediaType)
}
