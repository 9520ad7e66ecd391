package render

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The VOI LUT functions of PS3.3 C.11.2.1.2, spelled as in the window
// query parameter of PS3.18.
const (
	linear      = "linear"
	linearExact = "linear-exact"
	sigmoid     = "sigmoid"
)

// Window is a window/level override from the window=center,width,function
// query parameter. Function is linear (the default when empty),
// linear-exact or sigmoid, as defined in PS3.3 C.11.2.1.2.
type Window struct {
	Center, Width float64
	Function      string
}

// ParseWindow parses "center,width" or "center,width,function". The
// function is matched without regard to case, and the VOI LUT Function
// spelling LINEAR_EXACT is accepted. The width must be positive, and at
// least 1 for linear (PS3.3 C.11.2.1.2.1).
func ParseWindow(s string) (Window, error) {
	parts := strings.Split(s, ",")
	if len(parts) < 2 || len(parts) > 3 {
		return Window{}, fmt.Errorf("render: window %q is not center,width[,function]", s)
	}
	var w Window
	var err error
	if w.Center, err = strconv.ParseFloat(strings.TrimSpace(parts[0]), 64); err != nil {
		return Window{}, fmt.Errorf("render: window center %q is not a number", parts[0])
	}
	if w.Width, err = strconv.ParseFloat(strings.TrimSpace(parts[1]), 64); err != nil {
		return Window{}, fmt.Errorf("render: window width %q is not a number", parts[1])
	}
	if len(parts) == 3 {
		w.Function = strings.TrimSpace(parts[2])
	}
	return w.normalize()
}

// normalize checks w and spells its function canonically.
func (w Window) normalize() (Window, error) {
	switch strings.ToLower(w.Function) {
	case "", linear:
		w.Function = linear
	case linearExact, "linear_exact":
		w.Function = linearExact
	case sigmoid:
		w.Function = sigmoid
	default:
		return Window{}, fmt.Errorf("render: window function %q is not linear, linear-exact or sigmoid", w.Function)
	}
	switch {
	case !finite(w.Center) || !finite(w.Width):
		return Window{}, fmt.Errorf("render: window %v,%v is not finite", w.Center, w.Width)
	case w.Width <= 0:
		return Window{}, fmt.Errorf("render: window width %v is not positive", w.Width)
	case w.Function == linear && w.Width < 1:
		return Window{}, fmt.Errorf("render: linear window width %v is below 1", w.Width)
	}
	return w, nil
}

// apply maps a modality value x to 0..255 with the equations of PS3.3
// C.11.2.1.2 (ymin 0, ymax 255). The result is clamped by toByte.
func (w Window) apply(x float64) float64 {
	c, width := w.Center, w.Width
	switch w.Function {
	case linearExact:
		switch {
		case x <= c-width/2:
			return 0
		case x > c+width/2:
			return 255
		}
		return ((x-c)/width + 0.5) * 255
	case sigmoid:
		return 255 / (1 + math.Exp(-4*(x-c)/width))
	}
	// Linear. A width below 1 (possible only from a dataset) acts as 1, a
	// threshold at c-0.5, which the first two cases decide alone.
	width = max(width, 1)
	switch {
	case x <= c-0.5-(width-1)/2:
		return 0
	case x > c-0.5+(width-1)/2:
		return 255
	}
	return ((x-(c-0.5))/(width-1) + 0.5) * 255
}
