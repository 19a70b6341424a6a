package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// row is one figure: the library's value beside the limit it is measured
// against, and whether the target holds.
type row struct {
	Figure  string  `json:"figure"`
	Library float64 `json:"library"`
	Limit   float64 `json:"limit,omitempty"` // the raw measurement, or the target for a bound
	Ratio   float64 `json:"ratio,omitempty"` // library / limit
	Target  string  `json:"target,omitempty"`
	Pass    *bool   `json:"pass,omitempty"`
}

type sweepPoint struct {
	Producers int                `json:"producers"`
	RawTx     float64            `json:"raw_tx_per_s"`
	LibraryTx float64            `json:"library_tx_per_s"`
	Peers     map[string]float64 `json:"peers_tx_per_s,omitempty"` // by peer label, from the peers phase
}

// peerRow is a system of the peers phase's comparison: the raw limits, the
// library and each peer, with their ratios to this run's raw DB rate and
// to its raw DB + broker limit.
type peerRow struct {
	System        string   `json:"system"`
	Setup         string   `json:"setup,omitempty"`
	CommitTx      float64  `json:"commit_tx_per_s"`
	CommitVsRaw   float64  `json:"commit_vs_raw_db,omitempty"`
	CommitVsLimit float64  `json:"commit_vs_limit,omitempty"`
	E2ETx         float64  `json:"e2e_tx_per_s,omitempty"`
	E2EVsLimit    float64  `json:"e2e_vs_limit,omitempty"`
	P50           float64  `json:"latency_p50_ms,omitempty"` // commit to handled at full load
	P99           float64  `json:"latency_p99_ms,omitempty"`
	PacedTx       float64  `json:"paced_tx_per_s,omitempty"`       // commit rate with the producers held to the paced latency phase's rate
	PacedP99      float64  `json:"paced_p99_ms,omitempty"`         // commit to handled p99 then
	DrainMsgs     float64  `json:"drain_msgs_per_s,omitempty"`     // backlog drain to the consumer
	DrainVsRaw    float64  `json:"drain_vs_raw_publish,omitempty"` // against raw confirmed publish + consume
	Committed     int64    `json:"committed_messages,omitempty"`   // the peer's, in all its phases
	Lost          int64    `json:"lost"`                           // committed, never delivered
	Duplicates    int64    `json:"duplicates"`                     // deliveries of a message already delivered
	Phantoms      int64    `json:"phantoms,omitempty"`             // delivered, never committed
	Notes         []string `json:"notes,omitempty"`
}

// pacedResult is the paced latency phase: its rate and what the limit and
// the library delivered at it.
type pacedResult struct {
	rate           float64
	stack, lib     latency
	stackTx, libTx float64 // the commit rates they reached
}

// measured keeps the figures of this run that the peers phase compares.
type measured struct {
	rawTx  float64
	stack  *rawStackResult
	rawPub *rawPublishResult
	lib    *libResult
	drain  *drainResult
	// paced is the paced latency phase, if it ran: the peers are held to
	// its rate too.
	paced *pacedResult
	// rawDrain is the raw publish and consume rate the drain was compared
	// with: that of the median round of those that alternated with it (0:
	// no drain).
	rawDrain float64
}

type report struct {
	Machine  string       `json:"machine"`
	Database string       `json:"database"`
	Broker   string       `json:"broker"`
	Config   string       `json:"config"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Rows     []row        `json:"rows"`
	Peers    []peerRow    `json:"peers,omitempty"`
	Sweep    []sweepPoint `json:"sweep,omitempty"`
	// RawSettings are the raw broker limits' settings, and the sweep that
	// chose them.
	RawSettings *rawLimitSettings `json:"raw_settings,omitempty"`

	measured measured
}

// add records a rate against a measured limit with a minimum ratio.
func (r *report) add(figure string, lib, limit float64, target string, minRatio float64) {
	pass := ratio(lib, limit) >= minRatio
	r.Rows = append(r.Rows, row{Figure: figure, Library: lib, Limit: limit, Ratio: ratio(lib, limit), Target: target, Pass: &pass})
}

// addRef records a rate beside a limit without a target: it explains the
// other rows rather than judging the library.
func (r *report) addRef(figure string, v, limit float64, note string) {
	r.Rows = append(r.Rows, row{Figure: figure, Library: v, Limit: limit, Ratio: ratio(v, limit), Target: note})
}

// ratio is v / limit, 0 without a limit.
func ratio(v, limit float64) float64 {
	if limit <= 0 {
		return 0
	}
	return v / limit
}

// addLatency records a latency, with an upper bound when bound > 0.
func (r *report) addLatency(figure string, ms, bound float64) {
	if bound <= 0 {
		r.Rows = append(r.Rows, row{Figure: figure, Library: ms})
		return
	}
	r.addMax(figure, ms, bound)
}

// addMax records a value that must stay at or under bound.
func (r *report) addMax(figure string, v, bound float64) {
	pass := v <= bound
	r.Rows = append(r.Rows, row{Figure: figure, Library: v, Limit: bound, Ratio: v / bound,
		Target: fmt.Sprintf("<= %.4g", bound), Pass: &pass})
}

func (r *report) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine:  %s\ndatabase: %s   broker: %s\nconfig:   %s\n", r.Machine, r.Database, r.Broker, r.Config)
	r.rawSettingsLines(&b)
	b.WriteString("\n")
	fmt.Fprintf(&b, "| %-36s | %10s | %10s | %6s | %-36s | %-4s |\n", "figure", "library", "limit", "ratio", "target", "ok")
	fmt.Fprintf(&b, "|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 38), strings.Repeat("-", 12), strings.Repeat("-", 12),
		strings.Repeat("-", 8), strings.Repeat("-", 38), strings.Repeat("-", 6))
	for _, x := range r.Rows {
		limit, ratio, ok := "", "", ""
		if x.Limit != 0 {
			limit, ratio = num(x.Limit), fmt.Sprintf("%.2f", x.Ratio)
		}
		if x.Pass != nil {
			ok = map[bool]string{true: "yes", false: "NO"}[*x.Pass]
		}
		fmt.Fprintf(&b, "| %-36s | %10s | %10s | %6s | %-36s | %-4s |\n", x.Figure, num(x.Library), limit, ratio, x.Target, ok)
	}
	r.peersTable(&b)
	r.rawSweepTable(&b)
	if len(r.Sweep) > 0 {
		labels := r.peerLabels()
		fmt.Fprintf(&b, "\n| producers | raw DB tx/s | library tx/s | ratio |")
		for _, l := range labels {
			fmt.Fprintf(&b, " %s tx/s | ratio |", l)
		}
		fmt.Fprintf(&b, "\n|---|---|---|---|%s\n", strings.Repeat("---|---|", len(labels)))
		for _, p := range r.Sweep {
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f |", p.Producers, p.RawTx, p.LibraryTx, p.LibraryTx/p.RawTx)
			for _, l := range labels {
				fmt.Fprintf(&b, " %.0f | %.2f |", p.Peers[l], p.Peers[l]/p.RawTx)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// peersTable writes the peers phase's comparison, if it ran.
func (r *report) peersTable(b *strings.Builder) {
	if len(r.Peers) == 0 {
		return
	}
	fmt.Fprintf(b, "\npeers, same database, broker and transaction (ratios: /raw = to raw DB alone, /limit = to raw DB + broker;\n"+
		"p50, p99: commit to handled at full load; paced: the producers held to the paced latency phase's rate, %s):\n\n", r.pacedRateText())
	fmt.Fprintf(b, "| %-40s | %8s | %5s | %6s | %8s | %6s | %8s | %8s | %8s | %9s | %8s | %6s | %6s | %4s |\n",
		"system", "commit", "/raw", "/limit", "e2e", "/limit", "p50 ms", "p99 ms", "paced", "p99 paced", "drain", "/raw", "lost", "dup")
	fmt.Fprintf(b, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 42), strings.Repeat("-", 10),
		strings.Repeat("-", 7), strings.Repeat("-", 8), strings.Repeat("-", 10), strings.Repeat("-", 8), strings.Repeat("-", 10),
		strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 11), strings.Repeat("-", 10), strings.Repeat("-", 8),
		strings.Repeat("-", 8), strings.Repeat("-", 6))
	blank := func(v float64, f string) string {
		if v == 0 {
			return ""
		}
		return fmt.Sprintf(f, v)
	}
	var notes []string
	for _, p := range r.Peers {
		lost, dup := strconv.FormatInt(p.Lost, 10), strconv.FormatInt(p.Duplicates, 10)
		if strings.HasPrefix(p.System, "raw") {
			lost, dup = "", ""
		}
		fmt.Fprintf(b, "| %-40s | %8s | %5s | %6s | %8s | %6s | %8s | %8s | %8s | %9s | %8s | %6s | %6s | %4s |\n", p.System,
			blank(p.CommitTx, "%.0f"), blank(p.CommitVsRaw, "%.2f"), blank(p.CommitVsLimit, "%.2f"),
			blank(p.E2ETx, "%.0f"), blank(p.E2EVsLimit, "%.2f"), blank(p.P50, "%.2f"), blank(p.P99, "%.2f"),
			blank(p.PacedTx, "%.0f"), blank(p.PacedP99, "%.2f"),
			blank(p.DrainMsgs, "%.0f"), blank(p.DrainVsRaw, "%.2f"), lost, dup)
		for _, n := range p.Notes {
			notes = append(notes, p.System+": "+n)
		}
	}
	for _, p := range r.Peers {
		if p.Setup != "" {
			fmt.Fprintf(b, "  %s: %s\n", p.System, p.Setup)
		}
	}
	for _, n := range notes {
		fmt.Fprintf(b, "  NOTE %s\n", n)
	}
	for _, v := range r.versus() {
		fmt.Fprintf(b, "  %s\n", v)
	}
}

// peerLabels are the peers in the sweep, sorted.
func (r *report) peerLabels() []string {
	seen := map[string]bool{}
	for _, p := range r.Sweep {
		for l := range p.Peers {
			seen[l] = true
		}
	}
	labels := make([]string, 0, len(seen))
	for l := range seen {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return labels
}

func num(v float64) string {
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeSVG draws commit throughput against producers, raw and library.
func (r *report) writeSVG(path string) error {
	const (
		w, h                   = 640, 400
		left, right, top, bott = 70, 20, 50, 50
	)
	ymax := 0.0
	for _, p := range r.Sweep {
		ymax = max(ymax, p.RawTx, p.LibraryTx)
		for _, v := range p.Peers {
			ymax = max(ymax, v)
		}
	}
	ymax = niceCeil(ymax)
	x := func(i int) float64 {
		if len(r.Sweep) == 1 {
			return left + float64(w-left-right)/2
		}
		return left + float64(i)*float64(w-left-right)/float64(len(r.Sweep)-1)
	}
	y := func(v float64) float64 { return float64(h-bott) - v/ymax*float64(h-top-bott) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	settings := strings.Join(strings.Fields(r.Config)[1:3], ", ") // payload and per-tx; producers vary on the x axis
	title := "Commit throughput: raw database vs final"
	if len(r.peerLabels()) > 0 {
		title = "Commit throughput: raw database, final and peers (end to end: see the table)"
	}
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">%s</text>`+"\n", left, title)
	fmt.Fprintf(&b, `<text x="%d" y="34" fill="#555">%s; %s, %s and producers on one machine</text>`+"\n", left, settings, label(r.Database), brokerLabel(r.Broker))
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.0f</text>`+"\n",
			left, w-right, y(v), y(v), left-6, y(v)+4, v)
	}
	for i, p := range r.Sweep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i), h-bott+18, p.Producers)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">concurrent producers</text>`+"\n", (w+left)/2, h-12)
	fmt.Fprintf(&b, `<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">transactions / s</text>`+"\n", (h)/2, h/2)
	line := func(color string, val func(sweepPoint) float64) {
		var pts []string
		for i, p := range r.Sweep {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(val(p))))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(i), y(val(p)), color)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
	}
	line("#888", func(p sweepPoint) float64 { return p.RawTx })
	line("#1f77b4", func(p sweepPoint) float64 { return p.LibraryTx })
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="#888"/><text x="%d" y="%d">raw DB (business + outbox-shaped insert)</text>`+"\n", left+10, top+6, left+28, top+10)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="#1f77b4"/><text x="%d" y="%d">final (same transaction through the bus)</text>`+"\n", left+10, top+22, left+28, top+26)
	palette := []string{"#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	for i, l := range r.peerLabels() {
		color := palette[i%len(palette)]
		line(color, func(p sweepPoint) float64 { return p.Peers[l] })
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s (same transaction)</text>`+"\n",
			left+10, top+38+16*i, color, left+28, top+42+16*i, l)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// replotFile redraws throughput.svg from a results.json.
func replotFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	return r.writeSVG(filepath.Join(filepath.Dir(path), "throughput.svg"))
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
