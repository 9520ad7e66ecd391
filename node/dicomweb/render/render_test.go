package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// ct is a one-row CT-like frame: 16-bit signed, rescale intercept -1024.
func ct(ts string, hu ...int) (Pixels, []byte) {
	p := Pixels{Rows: 1, Columns: len(hu), SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16,
		PixelRepresentation: 1, Photometric: "MONOCHROME2", RescaleSlope: 1, RescaleIntercept: -1024,
		WindowCenter: 40, WindowWidth: 400, TransferSyntax: ts}
	var order binary.ByteOrder = binary.LittleEndian
	if ts == explicitBE {
		order = binary.BigEndian
	}
	b := make([]byte, 2*len(hu))
	for i, v := range hu {
		order.PutUint16(b[2*i:], uint16(int16(v+1024)))
	}
	return p, b
}

func render(t *testing.T, p Pixels, frame []byte, w *Window) image.Image {
	t.Helper()
	img, err := Image(p, frame, w)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, p.Columns, p.Rows) {
		t.Fatalf("bounds %v, want %d×%d", got, p.Columns, p.Rows)
	}
	return img
}

func grayPix(t *testing.T, img image.Image) []uint8 {
	t.Helper()
	g, ok := img.(*image.Gray)
	if !ok {
		t.Fatalf("got %T, want *image.Gray", img)
	}
	return g.Pix
}

// TestCTWindow: window 40/400 (linear, PS3.3 C.11.2.1.2.1) puts values at
// or below -160 HU at 0, above 239 HU at 255 and the centre at 127.82.
func TestCTWindow(t *testing.T) {
	hu := []int{-3000, -1024, -160, -159, 40, 239, 240, 3000}
	want := []uint8{0, 0, 0, 1, 128, 255, 255, 255}
	for _, ts := range []string{implicitLE, explicitLE, explicitBE} {
		p, frame := ct(ts, hu...)
		got := grayPix(t, render(t, p, frame, nil))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", ts, got, want)
		}
	}
	// The same frame with the dataset's window absent stretches min..max.
	p, frame := ct(explicitLE, hu...)
	p.WindowWidth = 0
	if got := grayPix(t, render(t, p, frame, nil)); got[0] != 0 || got[len(got)-1] != 255 {
		t.Errorf("min/max window: got %v", got)
	}
	// An override wins over the dataset's window.
	got := grayPix(t, render(t, p, frame, &Window{Center: 40, Width: 400, Function: "sigmoid"}))
	if got[4] != 128 || got[0] != 0 || got[7] != 255 {
		t.Errorf("sigmoid: got %v", got)
	}
}

// TestBitsStoredMasked: bits above Bits Stored are ignored and the value is
// sign-extended from Bits Stored.
func TestBitsStoredMasked(t *testing.T) {
	p := Pixels{Rows: 1, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12,
		PixelRepresentation: 1, Photometric: "MONOCHROME2", TransferSyntax: explicitLE}
	frame := []byte{0xFF, 0xFF, 0x00, 0xF0, 0x01, 0xF0} // -1, 0, 1 with garbage in the top nibble
	got := grayPix(t, render(t, p, frame, &Window{Center: 0, Width: 2, Function: "linear-exact"}))
	if want := []uint8{0, 128, 255}; !bytes.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestMonochrome1Inverted(t *testing.T) {
	p := Pixels{Rows: 2, Columns: 2, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8,
		Photometric: "MONOCHROME2", TransferSyntax: explicitLE}
	frame := []byte{0, 64, 192, 255}
	id := &Window{Center: 128, Width: 256} // the identity on 8 bits (PS3.3 C.11.2.1.2.1 note 4)
	if got := grayPix(t, render(t, p, frame, id)); !bytes.Equal(got, frame) {
		t.Fatalf("MONOCHROME2: got %v, want %v", got, frame)
	}
	p.Photometric = "MONOCHROME1 " // padded as read from a dataset
	if got, want := grayPix(t, render(t, p, frame, id)), []uint8{255, 191, 63, 0}; !bytes.Equal(got, want) {
		t.Errorf("MONOCHROME1: got %v, want %v", got, want)
	}
}

func TestRGBPlanarConfigurations(t *testing.T) {
	px := [][3]uint8{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}, {200, 100, 50}, {1, 2, 3}}
	var interleaved, planar []byte
	for _, c := range px {
		interleaved = append(interleaved, c[:]...)
	}
	for s := range 3 {
		for _, c := range px {
			planar = append(planar, c[s])
		}
	}
	p := Pixels{Rows: 2, Columns: 3, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8,
		Photometric: "RGB", TransferSyntax: explicitLE}
	a := render(t, p, interleaved, nil)
	p.PlanarConfiguration = 1
	b := render(t, p, planar, nil)
	for i, c := range px {
		x, y := i%3, i/3
		want := color.RGBA{c[0], c[1], c[2], 255}
		if a.At(x, y) != want || b.At(x, y) != want {
			t.Errorf("pixel %d: planar 0 %v, planar 1 %v, want %v", i, a.At(x, y), b.At(x, y), want)
		}
	}
}

// TestYBRFull: native YBR_FULL is converted with the JFIF equations of
// PS3.3 C.7.6.3.1.2.
func TestYBRFull(t *testing.T) {
	p := Pixels{Rows: 1, Columns: 2, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8,
		Photometric: "YBR_FULL", TransferSyntax: implicitLE}
	img := render(t, p, []byte{100, 128, 128, 76, 85, 255}, nil)
	if got := img.At(0, 0); got != (color.RGBA{100, 100, 100, 255}) {
		t.Errorf("grey: got %v", got)
	}
	if c := img.At(1, 0).(color.RGBA); !near(c.R, 255, 1) || !near(c.G, 0, 1) || !near(c.B, 0, 1) {
		t.Errorf("red: got %v", c)
	}
}

func TestShortFrame(t *testing.T) {
	p, frame := ct(explicitLE, 0, 0, 0, 0)
	if _, err := Image(p, frame[:7], nil); err == nil {
		t.Fatal("a 7-byte frame of four 16-bit pixels rendered")
	}
	p.Rows = 1 << 20
	if _, err := Image(p, frame, nil); err == nil {
		t.Fatal("2^20 rows rendered")
	}
}

func TestRefused(t *testing.T) {
	p, frame := ct(explicitLE, 0, 0)
	for name, mod := range map[string]func(*Pixels){
		"deflate":  func(p *Pixels) { p.TransferSyntax = "1.2.840.10008.1.2.4.90" },
		"palette":  func(p *Pixels) { p.Photometric = "PALETTE COLOR" },
		"1 bit":    func(p *Pixels) { p.BitsAllocated, p.BitsStored = 1, 1 },
		"12 bit":   func(p *Pixels) { p.TransferSyntax = jpegExtended; p.BitsStored = 12 },
		"422 raw":  func(p *Pixels) { p.SamplesPerPixel = 3; p.Photometric = "YBR_FULL_422"; p.Columns = 1 },
		"no ts":    func(p *Pixels) { p.TransferSyntax = "" },
		"4 sample": func(p *Pixels) { p.SamplesPerPixel = 4 },
	} {
		q := p
		mod(&q)
		if _, err := Image(q, frame, nil); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: got %v, want ErrUnsupported", name, err)
		}
	}
	bad := p
	bad.Photometric = "RGB" // with one sample per pixel
	if _, err := Image(bad, frame, nil); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("RGB with one sample: got %v", err)
	}
}

func encodeJPEG(img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 100}); err != nil {
		panic(err) // writing to a bytes.Buffer does not fail
	}
	return b.Bytes()
}

func near(a, b uint8, tol int) bool { d := int(a) - int(b); return d >= -tol && d <= tol }

func TestJPEGBaseline(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 16, 8))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 2)
	}
	p := Pixels{Rows: 8, Columns: 16, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8,
		Photometric: "MONOCHROME2", TransferSyntax: jpegBaseline}
	frame := encodeJPEG(src)
	got := grayPix(t, render(t, p, frame, &Window{Center: 128, Width: 256}))
	for i := range got {
		if !near(got[i], src.Pix[i], 3) {
			t.Fatalf("pixel %d: %d, want %d", i, got[i], src.Pix[i])
		}
	}

	rgb := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := range 256 {
		rgb.SetRGBA(i%16, i/16, color.RGBA{200, 40, 90, 255})
	}
	p = Pixels{Rows: 16, Columns: 16, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8,
		Photometric: "YBR_FULL_422", TransferSyntax: jpegBaseline}
	c := render(t, p, encodeJPEG(rgb), nil).At(5, 5).(color.RGBA)
	if !near(c.R, 200, 4) || !near(c.G, 40, 4) || !near(c.B, 90, 4) {
		t.Errorf("colour JPEG: got %v, want about {200 40 90}", c)
	}

	// Photometric RGB in a JPEG means the components were not transformed:
	// they come back as R, G and B.
	raw := image.NewYCbCr(image.Rect(0, 0, 16, 16), image.YCbCrSubsampleRatio444)
	for i := range raw.Y {
		raw.Y[i], raw.Cb[i], raw.Cr[i] = 200, 40, 90
	}
	p.Photometric = "RGB"
	c = render(t, p, encodeJPEG(raw), nil).At(5, 5).(color.RGBA)
	if !near(c.R, 200, 4) || !near(c.G, 40, 4) || !near(c.B, 90, 4) {
		t.Errorf("RGB JPEG: got %v, want about {200 40 90}", c)
	}

	p.Rows = 17 // the stream says 16
	if _, err := Image(p, encodeJPEG(rgb), nil); err == nil {
		t.Error("a JPEG whose size differs from the dataset's rendered")
	}
}

func TestFit(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 200, 100))
	for _, c := range []struct{ maxW, maxH, w, h int }{
		{50, 50, 50, 25}, {100, 10, 20, 10}, {400, 400, 200, 100}, {0, 20, 40, 20}, {3, 0, 3, 2}, {1, 1, 1, 1},
	} {
		if got := Fit(src, c.maxW, c.maxH).Bounds(); got.Dx() != c.w || got.Dy() != c.h {
			t.Errorf("Fit(200×100, %d, %d) = %v, want %d×%d", c.maxW, c.maxH, got, c.w, c.h)
		}
	}
	// The box filter averages: a 2×2 checkerboard of 0 and 255 becomes 128.
	g := &image.Gray{Pix: []uint8{0, 255, 255, 0}, Stride: 2, Rect: image.Rect(0, 0, 2, 2)}
	if got := Fit(g, 1, 1).(*image.Gray).Pix[0]; got != 128 {
		t.Errorf("box of 0,255,255,0 = %d", got)
	}
	rgba := Fit(image.NewRGBA(image.Rect(0, 0, 300, 30)), 100, 100)
	if _, ok := rgba.(*image.RGBA); !ok || rgba.Bounds().Dx() != 100 || rgba.Bounds().Dy() != 10 {
		t.Errorf("RGBA 300×30 fit to %T %v", rgba, rgba.Bounds())
	}
	// Other image types are converted to RGBA first.
	ycc := Fit(image.NewYCbCr(image.Rect(0, 0, 30, 300), image.YCbCrSubsampleRatio420), 100, 100)
	if _, ok := ycc.(*image.RGBA); !ok || ycc.Bounds().Dx() != 10 || ycc.Bounds().Dy() != 100 {
		t.Errorf("YCbCr 30×300 fit to %T %v", ycc, ycc.Bounds())
	}
}

func TestParseWindow(t *testing.T) {
	for _, s := range []string{"abc", "40", "40,0", "40,-5", "40,abc", "NaN,400", "40,Inf", "40,0.5", "40,400,cubic", "1,2,3,4", ""} {
		if w, err := ParseWindow(s); err == nil {
			t.Errorf("ParseWindow(%q) = %+v", s, w)
		}
	}
	for s, want := range map[string]Window{
		"40,400":               {40, 400, linear},
		" -600 , 1500 ,LINEAR": {-600, 1500, linear},
		"40,400,linear-exact":  {40, 400, linearExact},
		"40,0.5,sigmoid":       {40, 0.5, sigmoid},
	} {
		if got, err := ParseWindow(s); err != nil || got != want {
			t.Errorf("ParseWindow(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	p, frame := ct(explicitLE, 0)
	if _, err := Image(p, frame, &Window{Center: 1, Width: 0}); err == nil {
		t.Error("a zero-width override rendered")
	}
}

func TestEncode(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 4, 4))
	var b bytes.Buffer
	if err := Encode(&b, img, "image/png", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&b); err != nil {
		t.Errorf("PNG: %v", err)
	}
	b.Reset()
	if err := Encode(&b, img, "IMAGE/JPEG", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := jpeg.Decode(&b); err != nil {
		t.Errorf("JPEG: %v", err)
	}
	if err := Encode(&b, img, "image/jpeg", 101); err == nil {
		t.Error("quality 101 accepted")
	}
	if err := Encode(&b, img, "image/gif", 0); !errors.Is(err, ErrUnsupported) {
		t.Errorf("image/gif: %v", err)
	}
}

// FuzzImage: no Pixels within the bounds and no bytes make Image panic, and
// what it renders has the frame's size.
func FuzzImage(f *testing.F) {
	p, frame := ct(explicitLE, -1024, 40, 3000, 0)
	f.Add(uint8(p.Rows), uint8(p.Columns), uint8(1), uint8(16), uint8(16), uint8(1), uint8(1), uint8(0), uint8(1), 1.0, -1024.0, 40.0, 400.0, "", frame)
	g := image.NewGray(image.Rect(0, 0, 9, 5))
	f.Add(uint8(5), uint8(9), uint8(1), uint8(8), uint8(8), uint8(0), uint8(0), uint8(0), uint8(3), 0.0, 0.0, 0.0, 0.0, "128,256", encodeJPEG(g))
	f.Add(uint8(2), uint8(1), uint8(3), uint8(8), uint8(8), uint8(0), uint8(2), uint8(1), uint8(0), 0.0, 0.0, 0.0, 0.0, "0,1,sigmoid", []byte{1, 2, 3, 4, 5, 6})
	photometrics := []string{"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR"}
	syntaxes := []string{implicitLE, explicitLE, explicitBE, jpegBaseline, jpegExtended}
	f.Fuzz(func(t *testing.T, rows, cols, samples, alloc, stored, pixrep, photo, planar, ts uint8,
		slope, intercept, center, width float64, window string, frame []byte) {
		p := Pixels{Rows: int(rows % 40), Columns: int(cols % 40), SamplesPerPixel: int(samples % 5),
			BitsAllocated: int(alloc % 20), BitsStored: int(stored % 20), PixelRepresentation: int(pixrep % 3),
			Photometric: photometrics[int(photo)%len(photometrics)], PlanarConfiguration: int(planar % 3),
			RescaleSlope: slope, RescaleIntercept: intercept, WindowCenter: center, WindowWidth: width,
			TransferSyntax: syntaxes[int(ts)%len(syntaxes)]}
		var w *Window
		if window != "" {
			parsed, err := ParseWindow(window)
			if err != nil {
				parsed = Window{Center: center, Width: width, Function: window}
			}
			w = &parsed
		}
		img, err := Image(p, frame, w)
		if err == nil && img.Bounds() != image.Rect(0, 0, p.Columns, p.Rows) {
			t.Fatalf("rendered %v for %d×%d", img.Bounds(), p.Columns, p.Rows)
		}
		if err == nil {
			Fit(img, int(cols%7), int(rows%7))
		}
	})
}
