package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Plot geometry, in pixels.
const (
	plotW, plotH           = 820, 480
	marginL, marginR       = 80, 30
	marginT, marginB       = 40, 60
	glyphScale             = 2
	glyphW, glyphH, glyphG = 3, 5, 1
)

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colAxis       = color.RGBA{40, 40, 40, 255}
	colGrid       = color.RGBA{225, 225, 225, 255}
	colTarget     = color.RGBA{40, 160, 60, 255}
	plotSeries    = []struct {
		label string
		col   color.RGBA
		value func(ConfigResult) (float64, bool)
	}{
		{"downtime p50", color.RGBA{30, 90, 200, 255}, func(c ConfigResult) (float64, bool) { return c.DowntimeMs.P50, c.DowntimeMs.N > 0 }},
		{"downtime p99", color.RGBA{130, 170, 240, 255}, func(c ConfigResult) (float64, bool) { return c.DowntimeMs.P99, c.DowntimeMs.N > 0 }},
		{"HMI gap p50", color.RGBA{230, 120, 20, 255}, func(c ConfigResult) (float64, bool) { return c.ProbeGapMs.P50, c.ProbeGapMs.N > 0 }},
	}
)

// WritePlot draws agent downtime (p50, p99) and the HMI's largest gap (p50)
// in ms against the PLC's ballast in MiB, with the small PLC's 60 ms target
// as a green line, and writes it as a PNG. Only the standard library is
// used, so the labels are a tiny bitmap font.
func WritePlot(path string, r Report) error {
	img := RenderPlot(r)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return f.Close()
}

// RenderPlot draws the plot WritePlot writes.
func RenderPlot(r Report) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fill(img, img.Bounds(), colBackground)
	x0, y0, x1, y1 := marginL, plotH-marginB, plotW-marginR, marginT

	maxX, maxY := 1.0, float64(targetSmallDowntimeMs)
	var xs []float64
	for _, c := range r.Configs {
		maxX = max(maxX, float64(c.BallastMiB))
		xs = append(xs, float64(c.BallastMiB))
		for _, s := range plotSeries {
			if v, ok := s.value(c); ok {
				maxY = max(maxY, v)
			}
		}
	}
	step := niceStep(maxY / 5)
	maxY = math.Ceil(maxY*1.05/step) * step
	px := func(v float64) int { return x0 + int(math.Round(v/maxX*float64(x1-x0))) }
	py := func(v float64) int { return y0 - int(math.Round(v/maxY*float64(y0-y1))) }

	for v := 0.0; v <= maxY+step/2; v += step {
		hline(img, x0, x1, py(v), colGrid, false)
		label := fmt.Sprintf("%.0f", v)
		drawText(img, x0-8-textWidth(label), py(v)-glyphH*glyphScale/2, label, colAxis)
	}
	slices.Sort(xs)
	for _, v := range slices.Compact(xs) {
		vline(img, px(v), y0, y1, colGrid)
		label := fmt.Sprintf("%.0f", v)
		drawText(img, px(v)-textWidth(label)/2, y0+10, label, colAxis)
	}
	hline(img, x0, x1, py(targetSmallDowntimeMs), colTarget, true)
	vline(img, x0, y0, y1, colAxis)
	hline(img, x0, x1, y0, colAxis, false)
	drawText(img, x0-8-textWidth("ms"), y1-22, "ms", colAxis)
	drawText(img, (x0+x1)/2-textWidth("ballast MiB")/2, y0+34, "ballast MiB", colAxis)

	lx := x0 + 20
	for _, s := range plotSeries {
		var pts []image.Point
		for _, c := range r.Configs {
			if v, ok := s.value(c); ok {
				pts = append(pts, image.Pt(px(float64(c.BallastMiB)), py(v)))
			}
		}
		slices.SortStableFunc(pts, func(a, b image.Point) int { return a.X - b.X })
		for i := 1; i < len(pts); i++ {
			line(img, pts[i-1], pts[i], s.col)
		}
		for _, p := range pts {
			fill(img, image.Rect(p.X-4, p.Y-4, p.X+5, p.Y+5), s.col)
		}
		fill(img, image.Rect(lx, 12, lx+14, 24), s.col)
		drawText(img, lx+20, 13, s.label, colAxis)
		lx += 40 + textWidth(s.label)
	}
	hline(img, lx, lx+20, 18, colTarget, true)
	drawText(img, lx+26, 13, fmt.Sprintf("%d ms", targetSmallDowntimeMs), colAxis)
	return img
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, xa, xb, y int, c color.RGBA, dashed bool) {
	for x := xa; x <= xb; x++ {
		if !dashed || (x/6)%2 == 0 {
			img.SetRGBA(x, y, c)
		}
	}
}

func vline(img *image.RGBA, x, ya, yb int, c color.RGBA) {
	for y := min(ya, yb); y <= max(ya, yb); y++ {
		img.SetRGBA(x, y, c)
	}
}

// line draws a 2-pixel-thick segment by stepping along its longer axis.
func line(img *image.RGBA, a, b image.Point, c color.RGBA) {
	n := max(abs(b.X-a.X), abs(b.Y-a.Y), 1)
	for i := 0; i <= n; i++ {
		x := a.X + (b.X-a.X)*i/n
		y := a.Y + (b.Y-a.Y)*i/n
		fill(img, image.Rect(x, y, x+2, y+2), c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// glyphs is a 3×5 bitmap font holding only what the plot writes: each
// glyph is five rows of three bits, the top row first.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, ' ': {0, 0, 0, 0, 0},
	'a': {0, 3, 5, 5, 3}, 'b': {4, 6, 5, 5, 6}, 'd': {1, 3, 5, 5, 3}, 'e': {0, 3, 7, 4, 3},
	'g': {3, 5, 3, 1, 6}, 'i': {2, 0, 2, 2, 2}, 'l': {6, 2, 2, 2, 7}, 'm': {0, 6, 7, 5, 5},
	'n': {0, 6, 5, 5, 5}, 'o': {0, 2, 5, 5, 2}, 'p': {0, 6, 5, 6, 4}, 's': {0, 3, 6, 1, 6},
	't': {2, 7, 2, 2, 3}, 'w': {0, 5, 5, 7, 5}, 'B': {6, 5, 6, 5, 6}, 'H': {5, 5, 7, 5, 5},
	'I': {7, 2, 2, 2, 7}, 'M': {5, 7, 7, 5, 5},
}

func textWidth(s string) int {
	return len([]rune(s)) * (glyphW + glyphG) * glyphScale
}

// drawText writes s with its top-left corner at (x, y); runes without a
// glyph are drawn as blanks.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range s {
		g := glyphs[r]
		for row := 0; row < glyphH; row++ {
			for col := 0; col < glyphW; col++ {
				if g[row]&(1<<(glyphW-1-col)) != 0 {
					fill(img, image.Rect(x+col*glyphScale, y+row*glyphScale, x+(col+1)*glyphScale, y+(row+1)*glyphScale), c)
				}
			}
		}
		x += (glyphW + glyphG) * glyphScale
	}
}
