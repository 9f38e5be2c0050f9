package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// Series is one line of a CDF chart: the 0th..100th percentiles of a distribution.
type Series struct {
	Name      string
	Quantiles []float64
}

var palette = []string{"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"}

// CDFChart draws the cumulative distributions as an SVG line chart with a logarithmic x axis
// (unit: "µs" or "ms"), one line per series.
func CDFChart(title, unit string, series []Series) []byte {
	const w, h, left, right, top, bottom = 720, 400, 60, 200, 40, 50
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, q := range s.Quantiles {
			if q > 0 {
				lo, hi = math.Min(lo, q), math.Max(hi, q)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	x := func(v float64) float64 {
		v = math.Max(v, lo)
		return left + pw*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	y := func(p float64) float64 { return top + ph*(1-p) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// Grid: decades and their 2x/5x on x, tenths on y.
	for d := lo; d <= hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > hi*1.0001 {
				break
			}
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), h-bottom+18, tick(v))
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x(v), top, x(v), h-bottom, stroke)
		}
	}
	for i := 0; i <= 10; i++ {
		p := float64(i) / 10
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", left, y(p), w-right, y(p))
		if i%2 == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.1f</text>`+"\n", left-6, y(p)+4, p)
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%s (log scale)</text>`+"\n", left+pw/2, h-12, html.EscapeString(unit))
	fmt.Fprintf(&b, `<text x="16" y="%.0f" transform="rotate(-90 16 %.0f)" text-anchor="middle">share of samples ≤ x</text>`+"\n", top+ph/2, top+ph/2)
	for i, s := range series {
		col := palette[i%len(palette)]
		var pts bytes.Buffer
		for j, q := range s.Quantiles {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(q), y(float64(j)/float64(len(s.Quantiles)-1)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, bytes.TrimSpace(pts.Bytes()))
		ly := top + 16 + 20*i
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", w-right+12, ly-4, w-right+32, ly-4, col)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", w-right+38, ly, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func tick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", v)
	}
}

// Charts returns the CDF charts of r by file name: swap-cdf.svg (µs per node-side update,
// per method), latency-cdf.svg (end-to-end ms, per secrets manager) and scale-read-cdf.svg and
// scale-apply-cdf.svg (node scale, per number of services), when r has them.
func (r *Results) Charts() map[string][]byte {
	out := map[string][]byte{}
	var swap []Series
	seen := map[string]bool{}
	for _, name := range swapOrder {
		for _, s := range r.Swap {
			if s.Method == name && !seen[name] {
				seen[name] = true
				swap = append(swap, Series{Name: s.Method, Quantiles: s.Update.Quantiles})
			}
		}
	}
	if len(swap) > 0 {
		out["swap-cdf.svg"] = CDFChart("Node-side update of one secret (host side)", "µs per update", swap)
	}
	var e2e []Series
	for _, l := range r.EndToEnd {
		e2e = append(e2e, Series{Name: l.Name, Quantiles: l.Latency.Quantiles})
	}
	if len(e2e) > 0 {
		out["latency-cdf.svg"] = CDFChart("Secret written → new value read in the running container", "ms", e2e)
	}
	var read, apply []Series
	for _, sc := range r.Scale {
		name := fmt.Sprintf("%d services", sc.Services)
		read = append(read, Series{Name: name, Quantiles: sc.Read.Quantiles})
		apply = append(apply, Series{Name: name, Quantiles: sc.Apply.Quantiles})
	}
	if len(read) > 0 {
		out["scale-read-cdf.svg"] = CDFChart("Agbot write → new value read in one service's container", "ms", read)
		out["scale-apply-cdf.svg"] = CDFChart("The agent's apply time of one update, by services on the node", "ms", apply)
	}
	return out
}
