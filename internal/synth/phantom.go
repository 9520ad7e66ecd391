package synth

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// An ellipse is one region of a phantom: the pixels whose centres fall inside
// it take the value v. Later ellipses paint over earlier ones.
type ellipse struct {
	cx, cy, rx, ry float64
	v              float32
}

// paint writes e's span on row y into row.
func (e ellipse) paint(row []float32, y int) {
	if e.rx <= 0 || e.ry <= 0 {
		return
	}
	dy := (float64(y) + 0.5 - e.cy) / e.ry
	if dy*dy >= 1 {
		return
	}
	hw := e.rx * math.Sqrt(1-dy*dy)
	x0 := max(int(math.Ceil(e.cx-hw-0.5)), 0)
	x1 := min(int(math.Floor(e.cx+hw-0.5)), len(row)-1)
	for x := x0; x <= x1; x++ {
		row[x] = e.v
	}
}

// noise says how random variation is added to a phantom.
type noise int

const (
	gaussian noise = iota // value + N(0, sigma): CT, CR
	rician                // |value + complex N(0, sigma)|: MR magnitude images
)

// phantom is everything needed to render one image.
type phantom struct {
	rows, cols int
	background float32
	shapes     []ellipse
	noise      noise
	sigma      float64
	offset     float64 // added before storing (CT: minus the rescale intercept)
	lo, hi     float64 // stored values are clamped to [lo, hi]
	signed     bool
	seed       uint64
}

// render writes rows*cols 16-bit little endian stored values into dst, which
// must be exactly 2*rows*cols bytes long.
func (p *phantom) render(dst []byte) {
	row := make([]float32, p.cols)
	r := wyrand(p.seed)
	for y := range p.rows {
		for x := range row {
			row[x] = p.background
		}
		for _, e := range p.shapes {
			e.paint(row, y)
		}
		out := dst[2*y*p.cols : 2*(y+1)*p.cols]
		for x, v := range row {
			var f float64
			switch p.noise {
			case rician:
				re := float64(v) + r.norm()*p.sigma
				im := r.norm() * p.sigma
				f = math.Sqrt(re*re + im*im)
			default:
				f = float64(v) + r.norm()*p.sigma
			}
			f = math.Round(f + p.offset)
			f = min(max(f, p.lo), p.hi)
			var s uint16
			if p.signed {
				s = uint16(int16(f))
			} else {
				s = uint16(f)
			}
			binary.LittleEndian.PutUint16(out[2*x:], s)
		}
	}
}

// wyrand is a small, fast, seedable generator (wyhash's wyrand); the
// phantoms need speed and reproducibility, not cryptographic quality.
type wyrand uint64

func (r *wyrand) next() uint64 {
	*r += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(uint64(*r), uint64(*r)^0xe7037ed1a0b428db)
	return hi ^ lo
}

// norm returns an approximately standard normal value: the centred sum of
// four uniform 16-bit values (Irwin-Hall, n=4) from a single draw.
func (r *wyrand) norm() float64 {
	u := r.next()
	s := (u & 0xffff) + (u >> 16 & 0xffff) + (u >> 32 & 0xffff) + (u >> 48)
	const mean, sd = 2 * 65535, 37837.2 // 4 * 65535 / 2; 65536 * sqrt(4/12)
	return (float64(s) - mean) / sd
}

// ctPhantom is an axial slice through a body at t in [0, 1] (0: the lung
// apices, 1: the pelvis), in Hounsfield units.
func ctPhantom(rows, cols int, t float64) (float32, []ellipse) {
	R, C := float64(rows), float64(cols)
	cx, cy := C/2, R*0.48
	s := math.Sin(math.Pi * (0.2 + 0.6*t))
	rx, ry := C*0.40*(0.9+0.1*s), R*0.27*(0.9+0.1*s)
	bump := func(a, b float64) float64 { // 0 outside [a, b], 1 in the middle
		if t <= a || t >= b {
			return 0
		}
		return math.Sqrt(math.Sin(math.Pi * (t - a) / (b - a)))
	}
	sh := []ellipse{
		{cx, cy + ry + R*0.04, C * 0.38, R * 0.012, 250}, // table
		{cx, cy, rx, ry, -100},                           // subcutaneous fat
		{cx, cy, rx - C*0.025, ry - R*0.03, 45},          // muscle and organs
	}
	if f := bump(0, 0.5); f > 0 { // lungs
		sh = append(sh,
			ellipse{cx - C*0.16, cy - R*0.02, C * 0.13 * f, R * 0.19 * f, -850},
			ellipse{cx + C*0.16, cy - R*0.02, C * 0.13 * f, R * 0.19 * f, -850})
	}
	if g := bump(0.2, 0.45); g > 0 {
		sh = append(sh, ellipse{cx + C*0.04, cy + R*0.01, C * 0.09 * g, R * 0.08 * g, 50}) // heart
	}
	if t < 0.75 {
		sh = append(sh, ellipse{cx + C*0.03, cy + R*0.1, C * 0.02, C * 0.02, 180}) // aorta
	}
	if h := bump(0.4, 0.7); h > 0 {
		sh = append(sh, ellipse{cx - C*0.13, cy - R*0.02, C * 0.17 * h, R * 0.16 * h, 60}) // liver
	}
	if k := bump(0.42, 0.62); k > 0 {
		sh = append(sh, ellipse{cx + C*0.2, cy + R*0.02, C * 0.06 * k, R * 0.08 * k, 50}) // spleen
	}
	if k := bump(0.55, 0.75); k > 0 { // kidneys
		sh = append(sh,
			ellipse{cx - C*0.12, cy + R*0.1, C * 0.035 * k, R * 0.05 * k, 150},
			ellipse{cx + C*0.12, cy + R*0.1, C * 0.035 * k, R * 0.05 * k, 150})
	}
	if g := bump(0.6, 0.9); g > 0 { // bowel gas
		sh = append(sh,
			ellipse{cx + C*0.08*math.Sin(9*t), cy - R*0.08, C * 0.03 * g, R * 0.02 * g, -900},
			ellipse{cx - C*0.06*math.Cos(7*t), cy - R*0.02, C * 0.02 * g, R * 0.025 * g, -900})
	}
	if p := bump(0.78, 1.2); p > 0 { // iliac wings
		sh = append(sh,
			ellipse{cx - C*0.22, cy + R*0.06, C * 0.06 * p, R * 0.1 * p, 650},
			ellipse{cx + C*0.22, cy + R*0.06, C * 0.06 * p, R * 0.1 * p, 650})
	}
	sh = append(sh, // spine
		ellipse{cx, cy + R*0.15, R * 0.045, R * 0.045, 700},
		ellipse{cx, cy + R*0.15, R * 0.033, R * 0.033, 250},
		ellipse{cx, cy + R*0.215, R * 0.016, R * 0.016, 10},
		ellipse{cx, cy + R*0.245, R * 0.012, R * 0.025, 700})
	return -1000, sh
}

// contrast holds an MR sequence's signal for each tissue (stored units).
type contrast struct{ fat, bone, csf, gm, wm, muscle float32 }

// mrAxial is an axial slice through a head at t in [0, 1] (0: skull base,
// 1: vertex).
func mrAxial(rows, cols int, t float64, c contrast) (float32, []ellipse) {
	R, C := float64(rows), float64(cols)
	cx, cy := C/2, R/2
	sz := 0.6 + 0.4*math.Sin(math.Pi*(0.1+0.8*t))
	rx, ry := C*0.36*sz, R*0.44*sz
	sh := []ellipse{
		{cx, cy, rx, ry, c.fat},
		{cx, cy, rx - C*0.02, ry - R*0.02, c.bone},
		{cx, cy, rx - C*0.035, ry - R*0.035, c.csf},
		{cx, cy, rx - C*0.045, ry - R*0.045, c.gm},
		{cx, cy, rx - C*0.09, ry - R*0.09, c.wm},
	}
	if t > 0.35 && t < 0.75 { // lateral ventricles
		v := math.Sin(math.Pi * (t - 0.35) / 0.4)
		sh = append(sh,
			ellipse{cx - C*0.035, cy - R*0.03, C * 0.025 * v, R * 0.1 * v, c.csf},
			ellipse{cx + C*0.035, cy - R*0.03, C * 0.025 * v, R * 0.1 * v, c.csf})
	}
	if t > 0.05 && t < 0.3 { // globes
		sh = append(sh,
			ellipse{cx - C*0.1, cy - ry + R*0.05, C * 0.04, R * 0.045, c.csf},
			ellipse{cx + C*0.1, cy - ry + R*0.05, C * 0.04, R * 0.045, c.csf})
	}
	return 0, sh
}

// mrSagittal is a sagittal slice through a head at t in [0, 1] (right to
// left, 0.5 the midline); the face is on the left of the image.
func mrSagittal(rows, cols int, t float64, c contrast) (float32, []ellipse) {
	R, C := float64(rows), float64(cols)
	cx, cy := C/2, R*0.45
	sz := 0.5 + 0.5*math.Sin(math.Pi*(0.1+0.8*t))
	rx, ry := C*0.42*sz, R*0.38*sz
	mid := math.Abs(t-0.5) < 0.12
	sh := []ellipse{
		{cx + C*0.05, R * 0.95, C * 0.17, R * 0.25, c.muscle}, // neck
		{cx, cy, rx, ry, c.fat},
		{cx, cy, rx - C*0.02, ry - R*0.02, c.bone},
		{cx, cy, rx - C*0.035, ry - R*0.035, c.csf},
		{cx, cy, rx - C*0.045, ry - R*0.045, c.gm},
		{cx, cy, rx - C*0.1, ry - R*0.1, c.wm},
		{cx + C*0.2*sz, cy + R*0.22*sz, C * 0.13 * sz, R * 0.09 * sz, c.gm}, // cerebellum
	}
	if mid {
		sh = append(sh,
			ellipse{cx, cy - R*0.02, C * 0.15, R * 0.045, c.csf},         // ventricle
			ellipse{cx, cy - R*0.06, C * 0.17, R * 0.025, c.wm},          // corpus callosum
			ellipse{cx + C*0.06, cy + R*0.25, C * 0.045, R * 0.16, c.wm}) // brainstem
	}
	return 0, sh
}

// crChest is a chest radiograph, posteroanterior or left lateral, in stored
// units (MONOCHROME2: more attenuation is brighter).
func crChest(rows, cols int, lateral bool) (float32, []ellipse) {
	R, C := float64(rows), float64(cols)
	cx := C / 2
	if lateral {
		return 150, []ellipse{
			{cx, R * 0.62, C * 0.3, R * 0.62, 1900},
			{cx - C*0.02, R * 0.45, C * 0.2, R * 0.3, 900},
			{cx - C*0.08, R * 0.6, C * 0.12, R * 0.12, 2000},
			{cx + C*0.2, R * 0.55, C * 0.04, R * 0.6, 2400},
		}
	}
	return 150, []ellipse{
		{cx, R * 0.62, C * 0.44, R * 0.62, 1900},       // torso
		{cx - C*0.38, R * 0.2, C * 0.1, R * 0.1, 2200}, // humeral heads
		{cx + C*0.38, R * 0.2, C * 0.1, R * 0.1, 2200},
		{cx - C*0.17, R * 0.45, C * 0.14, R * 0.29, 800}, // lungs
		{cx + C*0.17, R * 0.45, C * 0.14, R * 0.29, 800},
		{cx + C*0.05, R * 0.6, C * 0.13, R * 0.12, 2000},   // heart
		{cx, R * 0.55, C * 0.03, R * 0.6, 2400},            // spine
		{cx - C*0.15, R * 0.18, C * 0.14, R * 0.012, 2600}, // clavicles
		{cx + C*0.15, R * 0.18, C * 0.14, R * 0.012, 2600},
	}
}
