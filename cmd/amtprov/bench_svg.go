package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// benchSeries is one line of the chart: a run's provisioned-over-time curve.
type benchSeries struct {
	Label  string
	Points []benchPoint
}

// chartColors are distinguishable line colours (cycled).
var chartColors = [...]string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// Chart geometry, in SVG user units.
const (
	chartW, plotH = 800, 385.0
	padL, padR    = 70, 30
	padT, padB    = 40, 55
	legendLine    = 18
)

// writeBenchSVG draws devices provisioned over time, one polyline per
// series, with axes, ticks and a legend. Hand-written SVG: no dependency.
func writeBenchSVG(w io.Writer, title string, series []benchSeries) error {
	maxT, maxN := 0.0, 0
	for _, s := range series {
		for _, p := range s.Points {
			maxT = math.Max(maxT, p.T)
			maxN = max(maxN, p.Count)
		}
	}
	xTicks := niceTicks(maxT)
	yTicks := niceTicks(float64(maxN))
	xMax, yMax := xTicks[len(xTicks)-1], yTicks[len(yTicks)-1]
	// The legend goes under the plot, one line per series.
	chartH := padT + plotH + padB + legendLine*len(series) + 10
	plotW := float64(chartW - padL - padR)
	x := func(t float64) float64 { return padL + t/xMax*plotW }
	y := func(n float64) float64 { return padT + plotH - n/yMax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
	// Grid and ticks.
	for _, t := range xTicks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x(t), padT, x(t), padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), padT+plotH+18, tickLabel(t))
	}
	for _, n := range yTicks {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", padL, y(n), padL+plotW, y(n))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y(n)+4, tickLabel(n))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", padL, padT, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">seconds since the first hello</text>`+"\n", padL+plotW/2, padT+plotH+40)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">devices provisioned</text>`+"\n", padT+plotH/2)
	// Lines and legend.
	for i, s := range series {
		color := chartColors[i%len(chartColors)]
		pts := make([]string, 0, len(s.Points))
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.T), y(float64(p.Count))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		ly := padT + plotH + padB + 5 + legendLine*i
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", padL, ly, padL+24, ly, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", padL+30, ly+4, html.EscapeString(s.Label))
	}
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

// niceTicks returns ticks 0, step, ... covering max with a 1-2-5 step
// (at least [0, 1]).
func niceTicks(maxV float64) []float64 {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		maxV = 1
	}
	raw := maxV / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, m := range []float64{1, 2, 5} {
		if raw <= m*mag {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for v := 0.0; ; v += step {
		ticks = append(ticks, v)
		if v >= maxV {
			break
		}
	}
	return ticks
}

func tickLabel(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}
