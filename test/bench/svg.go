package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"sort"
	"strings"
)

// The images are SVG written by hand: no plotting module is needed, and a browser or the
// GitHub file view shows them as they are.

const (
	svgWidth  = 900
	plotLeft  = 70
	plotRight = 880
	plotWidth = plotRight - plotLeft
)

// palette colours series in order.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// series is one set of latencies (ms) to draw; +Inf values (never finished) are counted in
// the legend, not drawn.
type series struct {
	name   string
	values []float64
}

// vline is a labelled vertical line: a target, or a moment in a timeline.
type vline struct {
	label string
	x     float64
}

// axis maps values to pixels, linearly or logarithmically.
type axis struct {
	lo, hi   float64
	log      bool
	from, to float64 // pixels
}

func (a axis) px(v float64) float64 {
	if a.log {
		v = math.Max(v, a.lo)
		return a.from + (math.Log10(v)-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))*(a.to-a.from)
	}
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

// ticks returns tick values: 1-2-5 steps on a linear axis, 1-2-5 per decade on a log one.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for d := math.Floor(math.Log10(a.lo)); d <= math.Ceil(math.Log10(a.hi)); d++ {
			for _, m := range []float64{1, 2, 5} {
				if v := m * math.Pow(10, d); v >= a.lo*0.999 && v <= a.hi*1.001 {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep(a.hi-a.lo, 8)
	for v := math.Ceil(a.lo/step) * step; v <= a.hi+step/1e6; v += step {
		out = append(out, v)
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

// niceCeil rounds v up to a multiple of a nice step.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	step := niceStep(v, 5)
	return math.Ceil(v/step) * step
}

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

type svgDoc struct {
	b      strings.Builder
	height int
}

func newSVG(height int, title string) *svgDoc {
	d := &svgDoc{height: height}
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&d.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	d.text(svgWidth/2, 22, "middle", 15, title)
	return d
}

func (d *svgDoc) text(x, y float64, anchor string, size int, s string) {
	fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d">%s</text>`+"\n", x, y, anchor, size, html.EscapeString(s))
}

func (d *svgDoc) line(x1, y1, x2, y2 float64, color string, width float64, dash string) {
	extra := ""
	if dash != "" {
		extra = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(&d.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>`+"\n", x1, y1, x2, y2, color, width, extra)
}

func (d *svgDoc) polyline(points [][2]float64, color string) {
	var b strings.Builder
	for _, p := range points {
		fmt.Fprintf(&b, "%.1f,%.1f ", p[0], p[1])
	}
	fmt.Fprintf(&d.b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", color, strings.TrimSpace(b.String()))
}

// frame draws a panel's axes, grid and tick labels.
func (d *svgDoc) frame(x, y axis, xTitle, yTitle string) {
	for _, t := range y.ticks() {
		py := y.px(t)
		d.line(plotLeft, py, plotRight, py, "#e5e5e5", 1, "")
		d.text(plotLeft-6, py+4, "end", 11, label(t))
	}
	for _, t := range x.ticks() {
		px := x.px(t)
		d.line(px, y.from, px, y.to, "#f0f0f0", 1, "")
		d.text(px, y.from+16, "middle", 11, label(t))
	}
	d.line(plotLeft, y.from, plotRight, y.from, "#333", 1, "")
	d.line(plotLeft, y.from, plotLeft, y.to, "#333", 1, "")
	d.text((plotLeft+plotRight)/2, y.from+32, "middle", 12, xTitle)
	fmt.Fprintf(&d.b, `<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">%s</text>`+"\n",
		(y.from+y.to)/2, (y.from+y.to)/2, html.EscapeString(yTitle))
}

func (d *svgDoc) vlines(x axis, top, bottom float64, lines []vline) {
	for i, l := range lines {
		px := x.px(l.x)
		d.line(px, top, px, bottom, "#555", 1.2, "6,4")
		d.text(px+4, top+12+float64(i%3)*13, "start", 11, l.label)
	}
}

func (d *svgDoc) write(path string) error {
	d.b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(d.b.String()), 0o644)
}

// drawLatency draws a histogram and a cumulative distribution of each series (ms), with
// the targets as dashed lines. The axis turns logarithmic when values span over 30x.
func drawLatency(path, title string, ss []series, targets []vline) error {
	lo, hi := math.Inf(1), 0.0
	for _, s := range ss {
		for _, v := range s.values {
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
		lo, hi = math.Min(lo, t.x), math.Max(hi, t.x)
	}
	x := axis{lo: 0, hi: niceCeil(hi), from: plotLeft, to: plotRight}
	if lo > 0 && hi/lo > 30 {
		x = axis{lo: step125(lo, false), hi: step125(hi, true), log: true, from: plotLeft, to: plotRight}
	}
	const bins = 50
	edge := func(i int) float64 {
		if x.log {
			return math.Pow(10, math.Log10(x.lo)+float64(i)*(math.Log10(x.hi)-math.Log10(x.lo))/bins)
		}
		return x.lo + float64(i)*(x.hi-x.lo)/bins
	}
	counts := make([][bins]int, len(ss))
	maxCount := 1
	for i, s := range ss {
		for _, v := range s.values {
			if math.IsInf(v, 0) {
				continue
			}
			b := sort.Search(bins, func(k int) bool { return edge(k+1) >= v })
			if b >= bins {
				b = bins - 1
			}
			counts[i][b]++
			maxCount = max(maxCount, counts[i][b])
		}
	}
	legendHeight := 18 * len(ss)
	d := newSVG(610+legendHeight, title)
	hist := axis{lo: 0, hi: niceCeil(float64(maxCount)), from: 250, to: 50}
	d.frame(x, hist, "", "claims per bin")
	for i := range ss {
		for b := 0; b < bins; b++ {
			if counts[i][b] == 0 {
				continue
			}
			x0, x1 := x.px(edge(b)), x.px(edge(b+1))
			y0 := hist.px(float64(counts[i][b]))
			fmt.Fprintf(&d.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.55"/>`+"\n",
				x0, y0, math.Max(x1-x0-0.5, 0.5), hist.from-y0, palette[i%len(palette)])
		}
	}
	d.vlines(x, hist.to, hist.from, targets)
	cdf := axis{lo: 0, hi: 1, from: 540, to: 300}
	unit := "latency (ms)"
	if x.log {
		unit += ", log scale"
	}
	d.frame(x, cdf, unit, "fraction of claims")
	for i, s := range ss {
		sorted := append([]float64(nil), s.values...)
		sort.Float64s(sorted)
		var pts [][2]float64
		n := float64(len(sorted))
		prevY := cdf.px(0)
		for k, v := range sorted {
			if math.IsInf(v, 0) {
				break
			}
			px := x.px(v)
			pts = append(pts, [2]float64{px, prevY})
			prevY = cdf.px(float64(k+1) / n)
			pts = append(pts, [2]float64{px, prevY})
		}
		if len(pts) > 0 {
			pts = append(pts, [2]float64{plotRight, prevY})
			d.polyline(pts, palette[i%len(palette)])
		}
		never := 0
		for _, v := range sorted {
			if math.IsInf(v, 0) {
				never++
			}
		}
		msLabel := func(v float64) string {
			if math.IsInf(v, 1) {
				return "never"
			}
			return label(v) + " ms"
		}
		legend := fmt.Sprintf("%s: n=%d, p50 %s, p99 %s, max %s", s.name, len(sorted),
			msLabel(percentile(sorted, 0.5)), msLabel(percentile(sorted, 0.99)), msLabel(percentile(sorted, 1)))
		if never > 0 {
			legend += fmt.Sprintf(", %d never finished", never)
		}
		ly := 600 + float64(i*18)
		d.line(plotLeft, ly-4, plotLeft+24, ly-4, palette[i%len(palette)], 3, "")
		d.text(plotLeft+30, ly, "start", 12, legend)
	}
	d.vlines(x, cdf.to, cdf.from, targets)
	return d.write(path)
}

// timeLine is one line of a timeline: y over x (seconds), drawn as steps.
type timeLine struct {
	name   string
	points [][2]float64
}

// drawTimeline draws lines over time with labelled moments.
func drawTimeline(path, title, yTitle string, lines []timeLine, moments []vline) error {
	maxX, maxY := 1.0, 1.0
	for _, l := range lines {
		for _, p := range l.points {
			maxX, maxY = math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	x := axis{lo: 0, hi: niceCeil(maxX), from: plotLeft, to: plotRight}
	y := axis{lo: 0, hi: niceCeil(maxY * 1.05), from: 400, to: 50}
	d := newSVG(450+18*len(lines), title)
	d.frame(x, y, "seconds", yTitle)
	for i, l := range lines {
		var pts [][2]float64
		for k, p := range decimate(l.points, plotWidth) {
			px, py := x.px(p[0]), y.px(p[1])
			if k > 0 {
				pts = append(pts, [2]float64{px, pts[len(pts)-1][1]})
			}
			pts = append(pts, [2]float64{px, py})
		}
		if len(pts) > 0 {
			pts = append(pts, [2]float64{x.px(maxX), pts[len(pts)-1][1]})
		}
		d.polyline(pts, palette[i%len(palette)])
		ly := 440 + float64(i*18)
		d.line(plotLeft, ly-4, plotLeft+24, ly-4, palette[i%len(palette)], 3, "")
		d.text(plotLeft+30, ly, "start", 12, l.name)
	}
	d.vlines(x, y.to, y.from, moments)
	return d.write(path)
}

// decimate keeps, per pixel column, the first, lowest, highest and last points, so that a
// long timeline stays small without losing its dips and peaks.
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

// occupancyLines turns a pool's occupancy timeline into lines, with x in seconds from t0.
func occupancyLines(timeline []occupancy, t0 float64) []timeLine {
	names := []struct {
		name  string
		state labState
	}{{"ready, unclaimed", labReady}, {"booting", labBooting}, {"bound to a claim", labBound}, {"being deleted", labDeleting}}
	var out []timeLine
	for _, n := range names {
		l := timeLine{name: n.name}
		for _, o := range timeline {
			l.points = append(l.points, [2]float64{float64(o.at.UnixNano())/1e9 - t0, float64(o.count[n.state])})
		}
		out = append(out, l)
	}
	return out
}
