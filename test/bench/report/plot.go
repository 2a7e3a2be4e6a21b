package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The images are SVG drawn by gonum's plot (docs/decisions.md, entry 68): a browser or the
// GitHub file view shows them as they are, and the axes, ticks and legends are a maintained
// library's, not the harness's.

const (
	// imageWidth is the width of every image; the heights grow with the legend.
	imageWidth = 900
	// legendLine is the height of one legend entry under a plot.
	legendLine = 18
)

// palette colours series in order.
var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
}

// Series is one set of latencies (ms) to draw; +Inf values (never finished) are counted in
// the legend, not drawn.
type Series struct {
	// Name names the series in the legend.
	Name string
	// Values are the latencies, in ms.
	Values []float64
}

// VLine is a labelled vertical line: a target, or a moment in a timeline.
type VLine struct {
	// Label is written next to the line.
	Label string
	// X is where the line stands, in the x axis's unit.
	X float64
}

// TimeLine is one line of a timeline: y over x (seconds), drawn as steps.
type TimeLine struct {
	// Name names the line in the legend.
	Name string
	// Points are the line's (x, y) points, in x order.
	Points [][2]float64
}

// sans is the images' font: gonum's default is a serif one.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// newPlot returns an empty plot in sans, titled title, with a grid and the harness's ticks
// on both axes.
func newPlot(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sans, 14)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(sans, 12)
		a.Tick.Label.Font = font.From(sans, 11)
		a.Tick.Marker = niceTicks{}
	}
	p.Add(plotter.NewGrid())
	return p
}

// newLegend returns a legend in sans.
func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font = font.From(sans, 12)
	l.Padding = vg.Points(3)
	return l
}

// colour is series i's colour, with alpha a (0 to 1).
func colour(i int, a float64) color.Color {
	r, g, b, _ := palette[i%len(palette)].RGBA()
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(255 * a)}
}

// line returns a line through points in colour c, stepped when step is set.
func line(points [][2]float64, c color.Color, width vg.Length, step bool) (*plotter.Line, error) {
	xys := make(plotter.XYs, len(points))
	for i, p := range points {
		xys[i].X, xys[i].Y = p[0], p[1]
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = c, width
	if step {
		l.StepStyle = plotter.PostStep
	}
	return l, nil
}

// addVLines draws lines as dashed verticals from 0 to top with their labels, staggered so
// that neighbours do not overwrite each other.
func addVLines(p *plot.Plot, lines []VLine, top float64) error {
	for i, v := range lines {
		l, err := line([][2]float64{{v.X, 0}, {v.X, top}}, color.Gray{0x55}, vg.Points(1.2), false)
		if err != nil {
			return err
		}
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    []plotter.XY{{X: v.X, Y: top * (0.97 - 0.06*float64(i%3))}},
			Labels: []string{v.Label},
		})
		if err != nil {
			return err
		}
		labels.Offset = vg.Point{X: vg.Points(4)}
		for i := range labels.TextStyle {
			labels.TextStyle[i].Font = font.From(sans, 11)
		}
		p.Add(l, labels)
	}
	return nil
}

// save draws plots stacked in one column above a legend of entries, and writes the SVG.
func save(path string, plots []*plot.Plot, height vg.Length, legend plot.Legend, entries int) error {
	legendHeight := vg.Points(float64(legendLine*entries + 10))
	c := vgsvg.New(vg.Points(imageWidth), height+legendHeight)
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	area := draw.Crop(dc, 0, 0, legendHeight, 0)
	column := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		column[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(8), PadY: vg.Points(12), PadLeft: vg.Points(4), PadRight: vg.Points(16)}
	for i, row := range plot.Align(column, tiles, area) {
		plots[i].Draw(row[0])
	}
	legend.Top, legend.Left = true, true
	legend.XOffs = vg.Points(60)
	legend.Draw(draw.Crop(dc, 0, 0, 0, -height))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// DrawLatency draws a histogram and a cumulative distribution of each series (ms), with
// the targets as dashed lines. The axis turns logarithmic when values span over 30x.
func DrawLatency(path, title string, ss []Series, targets []VLine) error {
	lo, hi := math.Inf(1), 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			if !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 1
	}
	// The targets are on the axis too: how far off they are is the point of the picture.
	for _, t := range targets {
		lo, hi = math.Min(lo, t.X), math.Max(hi, t.X)
	}
	xMin, xMax, logScale := math.Min(0, lo), niceCeil(hi), false
	if lo > 0 && hi/lo > 30 {
		xMin, xMax, logScale = step125(lo, false), step125(hi, true), true
	}
	const bins = 50
	edge := func(i int) float64 {
		if logScale {
			return math.Pow(10, math.Log10(xMin)+float64(i)*(math.Log10(xMax)-math.Log10(xMin))/bins)
		}
		return xMin + float64(i)*(xMax-xMin)/bins
	}
	// clamp keeps a value on the axis: a log axis has no room for 0 or less.
	clamp := func(v float64) float64 { return math.Min(math.Max(v, xMin), xMax) }

	hist, cdf := newPlot(title), newPlot("")
	hist.Y.Label.Text, cdf.Y.Label.Text = "claims per bin", "fraction of claims"
	cdf.X.Label.Text = "latency (ms)"
	if logScale {
		cdf.X.Label.Text += ", log scale"
	}
	legend := newLegend()
	maxCount := 1.0
	for i, s := range ss {
		counts := make([]float64, bins)
		sorted := append([]float64(nil), s.Values...)
		sort.Float64s(sorted)
		never := 0
		var steps [][2]float64
		for k, v := range sorted {
			if math.IsInf(v, 0) {
				never++
				continue
			}
			b := min(sort.Search(bins, func(k int) bool { return edge(k+1) >= v }), bins-1)
			counts[b]++
			maxCount = math.Max(maxCount, counts[b])
			x := clamp(v)
			if k == 0 {
				steps = append(steps, [2]float64{x, 0})
			}
			steps = append(steps, [2]float64{x, float64(k+1) / float64(len(sorted))})
		}
		h := &plotter.Histogram{FillColor: colour(i, 0.55)}
		for b, n := range counts {
			if n > 0 {
				h.Bins = append(h.Bins, plotter.HistogramBin{Min: edge(b), Max: edge(b + 1), Weight: n})
			}
		}
		if len(h.Bins) > 0 {
			hist.Add(h)
		}
		thumb, err := line(nil, colour(i, 1), vg.Points(3), false)
		if err != nil {
			return err
		}
		if len(steps) > 0 {
			steps = append(steps, [2]float64{xMax, steps[len(steps)-1][1]})
			l, err := line(steps, colour(i, 1), vg.Points(1.6), true)
			if err != nil {
				return err
			}
			cdf.Add(l)
		}
		msLabel := func(v float64) string {
			if math.IsInf(v, 1) {
				return "never"
			}
			return label(v) + " ms"
		}
		text := fmt.Sprintf("%s: n=%d, p50 %s, p99 %s, max %s", s.Name, len(sorted),
			msLabel(Percentile(sorted, 0.5)), msLabel(Percentile(sorted, 0.99)), msLabel(Percentile(sorted, 1)))
		if never > 0 {
			text += fmt.Sprintf(", %d never finished", never)
		}
		legend.Add(text, thumb)
	}
	histTop := niceCeil(maxCount)
	for _, p := range []*plot.Plot{hist, cdf} {
		p.X.Min, p.X.Max = xMin, xMax
		p.Y.Min = 0
		if logScale {
			p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, logTicks{}
		}
	}
	hist.Y.Max, cdf.Y.Max = histTop, 1
	if err := addVLines(hist, targets, histTop); err != nil {
		return err
	}
	if err := addVLines(cdf, targets, 1); err != nil {
		return err
	}
	return save(path, []*plot.Plot{hist, cdf}, vg.Points(560), legend, len(ss))
}

// DrawTimeline draws lines over time with labelled moments.
func DrawTimeline(path, title, yTitle string, lines []TimeLine, moments []VLine) error {
	maxX, maxY := 1.0, 1.0
	for _, l := range lines {
		for _, p := range l.Points {
			maxX, maxY = math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	p := newPlot(title)
	p.X.Label.Text, p.Y.Label.Text = "seconds", yTitle
	p.X.Min, p.X.Max = 0, niceCeil(maxX)
	p.Y.Min, p.Y.Max = 0, niceCeil(maxY*1.05)
	legend := newLegend()
	for i, l := range lines {
		pts := decimate(l.Points, imageWidth)
		if len(pts) > 0 {
			pts = append(pts, [2]float64{maxX, pts[len(pts)-1][1]})
		}
		ln, err := line(pts, colour(i, 1), vg.Points(1.6), true)
		if err != nil {
			return err
		}
		p.Add(ln)
		thumb, err := line(nil, colour(i, 1), vg.Points(3), false)
		if err != nil {
			return err
		}
		legend.Add(l.Name, thumb)
	}
	if err := addVLines(p, moments, p.Y.Max); err != nil {
		return err
	}
	return save(path, []*plot.Plot{p}, vg.Points(420), legend, len(lines))
}

// niceTicks marks a linear axis every 1, 2 or 5 times a power of ten, about eight times,
// labelled as the harness's figures are (plot.DefaultTicks labels counts as 2.50).
type niceTicks struct{}

// Ticks returns the ticks between lo and hi.
func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	step := niceStep(hi-lo, 8)
	var out []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi+step/1e6; i++ {
		v := i * step
		out = append(out, plot.Tick{Value: v, Label: label(v)})
	}
	return out
}

// logTicks marks a log axis at 1, 2 and 5 per decade, labelled as the harness's figures
// are (plot.LogTicks labels only powers of ten, too few over one or two decades).
type logTicks struct{}

// Ticks returns the ticks between lo and hi.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for d := math.Floor(math.Log10(lo)); d <= math.Ceil(math.Log10(hi)); d++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, d); v >= lo*0.999 && v <= hi*1.001 {
				out = append(out, plot.Tick{Value: v, Label: label(v)})
			}
		}
	}
	return out
}

// decimate keeps, per column, the first, lowest, highest and last points, so that a long
// timeline stays small without losing its dips and peaks.
func decimate(points [][2]float64, columns int) [][2]float64 {
	if len(points) <= 4*columns {
		return points
	}
	lo, hi := points[0][0], points[len(points)-1][0]
	if hi <= lo {
		return points
	}
	var out [][2]float64
	for i := 0; i < len(points); {
		col := int(float64(columns) * (points[i][0] - lo) / (hi - lo))
		j := i
		minK, maxK := i, i
		for j < len(points) && int(float64(columns)*(points[j][0]-lo)/(hi-lo)) == col {
			if points[j][1] < points[minK][1] {
				minK = j
			}
			if points[j][1] > points[maxK][1] {
				maxK = j
			}
			j++
		}
		keep := []int{i, minK, maxK, j - 1}
		sort.Ints(keep)
		for k, idx := range keep {
			if k == 0 || idx != keep[k-1] {
				out = append(out, points[idx])
			}
		}
		i = j
	}
	return out
}

// niceStep is a 1, 2 or 5 times a power of ten giving about n steps over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// step125 rounds v (> 0) to a 1, 2 or 5 times a power of ten: up, or down.
func step125(v float64, up bool) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	if up {
		for _, m := range []float64{1, 2, 5, 10} {
			if m*p >= v*0.999 {
				return m * p
			}
		}
		return 10 * p
	}
	for _, m := range []float64{5, 2, 1} {
		if m*p <= v*1.001 {
			return m * p
		}
	}
	return p
}

// niceCeil rounds v up to a multiple of a nice step, so that an axis ends on a tick.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	step := niceStep(v, 5)
	return math.Ceil(v/step) * step
}

// label writes a value as the images' legends and ticks do.
func label(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "never"
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%g", math.Round(v*1000)/1000)
	}
}
