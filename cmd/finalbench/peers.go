package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/finalbus/final/internal/redact"
)

// peerDatabases are the databases each peer runs on.
var peerDatabases = map[string][]string{
	"watermill": {"mysql", "postgres"},
	"river":     {"postgres"},
}

// peerOutput is what bench/peers/cmd/peerbench prints (the fields read
// here).
type peerOutput struct {
	System   string            `json:"system"`
	Versions map[string]string `json:"versions"`
	Setup    string            `json:"setup"`
	Commit   *peerPhase        `json:"commit"`
	Paced    *peerPhase        `json:"paced"` // the commit phase held to -rate, if finalbench passed one
	Drain    *struct {
		MsgPerS    float64 `json:"msg_per_s"`
		Lost       int64   `json:"lost"`
		LostNote   string  `json:"lost_note"`
		Duplicates int64   `json:"duplicates"`
	} `json:"drain"`
	Sweep  []peerSweepPoint `json:"sweep"`
	Totals struct {
		Committed  int64 `json:"committed"`
		Lost       int64 `json:"lost"`
		Duplicates int64 `json:"duplicates"`
		Phantoms   int64 `json:"phantoms"`
	} `json:"totals"`
}

// peerPhase is one of peerbench's commit phases, at full load or paced.
type peerPhase struct {
	CommitTx   float64                         `json:"commit_tx_per_s"`
	E2ETx      float64                         `json:"e2e_tx_per_s"`
	Latency    struct{ P50, P99, Max float64 } `json:"latency_ms"`
	Committed  int64                           `json:"committed"`
	Lost       int64                           `json:"lost"`
	LostNote   string                          `json:"lost_note"`
	Duplicates int64                           `json:"duplicates"`
	Complete   bool                            `json:"all_delivered"`
}

// notes says what of the phase's messages was never delivered, and where
// the peer found them.
func (ph *peerPhase) notes(name string) []string {
	var n []string
	if !ph.Complete {
		n = append(n, fmt.Sprintf("%s phase: %d of %d messages never delivered", name, ph.Lost, ph.Committed))
	}
	if ph.LostNote != "" {
		n = append(n, name+" phase: "+ph.LostNote)
	}
	return n
}

type peerSweepPoint struct {
	Producers int     `json:"producers"`
	CommitTx  float64 `json:"commit_tx_per_s"`
	Lost      int64   `json:"lost"`
}

// label names the peer with its version.
func (p *peerOutput) label() string {
	switch p.System {
	case "watermill":
		return "Watermill SQL forwarder " + p.Versions["github.com/ThreeDotsLabs/watermill-sql/v4"]
	case "river":
		return "River " + p.Versions["github.com/riverqueue/river"]
	}
	return p.System
}

// peersPhase builds bench/peers/cmd/peerbench and runs it for each peer
// that applies to the database, measuring first the limits that the
// phases run so far did not. It adds the comparison table's rows and
// returns each peer's sweep, for the chart.
func (r *report) peersPhase(env *benchEnv, say func(string, ...any)) (map[string][]peerSweepPoint, error) {
	c := env.cfg
	m := &r.measured
	if m.stack == nil {
		say("raw database + raw RabbitMQ (no outbox), %d producers, for the peers", c.concurrency)
		stack, err := env.rawStack(c.concurrency, c.perTx, c.duration, 0)
		if err != nil {
			return nil, err
		}
		m.stack = &stack
	}
	if m.rawPub == nil {
		say("raw RabbitMQ confirmed publishes, for the peers")
		rawPub, err := r.rawPublishLimit(env, c.backlog, say)
		if err != nil {
			return nil, err
		}
		m.rawPub = &rawPub
	}
	r.addLimitRows()

	var systems []string
	for _, p := range c.peers {
		if slices.Contains(peerDatabases[p], c.db.name) {
			systems = append(systems, p)
		} else {
			say("peers: %s does not run on %s", p, c.db.name)
		}
	}
	if len(systems) == 0 {
		return nil, nil
	}
	bin, cleanup, err := buildPeerbench(c.peersDir, say)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dsn, _, err := c.db.dsn(c.dsn)
	if err != nil {
		return nil, err
	}
	sweeps := map[string][]peerSweepPoint{}
	for _, sys := range systems {
		env.settle()
		args := []string{"-system", sys, "-db", c.db.name, "-dsn", dsn, "-amqp", c.amqpURL,
			"-c", strconv.Itoa(c.concurrency), "-size", strconv.Itoa(c.size), "-per-tx", strconv.Itoa(c.perTx),
			"-d", c.duration.String(), "-backlog", strconv.Itoa(c.backlog)}
		if c.runs("sweep") && len(c.sweep) > 0 {
			var ns []string
			for _, n := range c.sweep {
				ns = append(ns, strconv.Itoa(n))
			}
			args = append(args, "-sweep", strings.Join(ns, ","))
		}
		if p := m.paced; p != nil { // the peer held to the library's paced rate too
			args = append(args, "-rate", strconv.FormatFloat(p.rate, 'f', -1, 64))
		}
		args = append(args, c.peerFlags...)
		shown := slices.Clone(args)
		shown[5], shown[7] = redact.URL(dsn), redact.URL(c.amqpURL)
		say("peer %s: peerbench %s", sys, strings.Join(shown, " "))
		out, err := runPeerbench(bin, args)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", sys, err)
		}
		r.addPeer(out)
		sweeps[out.label()] = out.Sweep
	}
	return sweeps, nil
}

// buildPeerbench builds the peers' command into a temporary directory, in
// its own module (GOWORK=off: never through a workspace with the library).
func buildPeerbench(dir string, say func(string, ...any)) (string, func(), error) {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", nil, fmt.Errorf("peers: no module at -peers-dir %q (run from the repository's root, or set -peers-dir): %w", dir, err)
	}
	tmp, err := os.MkdirTemp("", "peerbench-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	bin := filepath.Join(tmp, "peerbench")
	say("peers: building %s/cmd/peerbench", dir)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/peerbench")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("peers: building peerbench: %w", err)
	}
	return bin, cleanup, nil
}

// runPeerbench runs one peer, its progress on stderr, and parses its JSON.
func runPeerbench(bin string, args []string) (*peerOutput, error) {
	var stdout bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("peerbench after %s: %w", time.Since(start).Round(time.Second), err)
	}
	var out peerOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("peerbench's output: %w", err)
	}
	if out.Commit == nil {
		return nil, fmt.Errorf("peerbench's output has no commit phase")
	}
	return &out, nil
}

// withRatios fills row's ratios to this run's raw DB rate, its raw DB +
// broker limit and its raw publish + consume rate.
func (r *report) withRatios(row peerRow) peerRow {
	m := r.measured
	row.CommitVsRaw = ratio(row.CommitTx, m.rawTx)
	if m.stack != nil {
		row.CommitVsLimit = ratio(row.CommitTx, m.stack.commitTx)
		row.E2EVsLimit = ratio(row.E2ETx, m.stack.e2eTx)
	}
	if raw := m.drainLimit(); raw > 0 {
		row.DrainVsRaw = ratio(row.DrainMsgs, raw)
	}
	return row
}

// drainLimit is the raw publish and consume rate drains are compared with:
// the one measured beside the library's drain, else the raw limit's.
func (m measured) drainLimit() float64 {
	if m.rawDrain > 0 {
		return m.rawDrain
	}
	if m.rawPub != nil {
		return m.rawPub.consumed
	}
	return 0
}

// addLimitRows puts the raw limits and the library's figures of this run
// at the head of the comparison table.
func (r *report) addLimitRows() {
	m := r.measured
	if len(r.Peers) > 0 {
		return
	}
	r.Peers = append(r.Peers, r.withRatios(peerRow{System: "raw DB alone", CommitTx: m.rawTx,
		Setup: "the business insert and -per-tx outbox-shaped inserts, prepared statements"}))
	limit := peerRow{System: "raw DB + broker, no outbox (the limit)",
		CommitTx: m.stack.commitTx, E2ETx: m.stack.e2eTx, DrainMsgs: m.drainLimit(),
		P50: m.stack.lat.p50, P99: m.stack.lat.p99, // commit to the raw consumer, at full load
		Setup: "the raw transaction, then amqp091-go publishing with pipelined confirms to a raw consumer; drain: raw confirmed publish + consume" + r.rawSetup()}
	if p := m.paced; p != nil {
		limit.PacedTx, limit.PacedP99 = p.stackTx, p.stack.p99
	}
	r.Peers = append(r.Peers, r.withRatios(limit))
	if lib := m.lib; lib != nil {
		row := peerRow{System: libRow, CommitTx: lib.commitTx, E2ETx: lib.e2eTx,
			P50: lib.lat.p50, P99: lib.lat.p99, Lost: lib.lost, Duplicates: lib.dups, Setup: "the library's defaults, -max-unconfirmed, -prefetch and -wire"}
		if p := m.paced; p != nil {
			row.PacedTx, row.PacedP99 = p.libTx, p.lib.p99
		}
		if d := m.drain; d != nil {
			row.DrainMsgs, row.Duplicates = d.delivered, row.Duplicates+d.dups
		}
		r.Peers = append(r.Peers, r.withRatios(row))
	}
}

// addPeer adds a peer's row: its commit phase, its drain, and the lost and
// duplicate messages of all its phases.
func (r *report) addPeer(p *peerOutput) {
	row := peerRow{System: p.label(), Setup: p.Setup,
		CommitTx: p.Commit.CommitTx, E2ETx: p.Commit.E2ETx, P50: p.Commit.Latency.P50, P99: p.Commit.Latency.P99,
		Lost: p.Totals.Lost, Duplicates: p.Totals.Duplicates, Phantoms: p.Totals.Phantoms, Committed: p.Totals.Committed}
	row.Notes = append(row.Notes, p.Commit.notes("commit")...)
	if p.Paced != nil {
		row.PacedTx, row.PacedP99 = p.Paced.CommitTx, p.Paced.Latency.P99
		row.Notes = append(row.Notes, p.Paced.notes("paced")...)
	}
	var sweepLost int64
	for _, s := range p.Sweep {
		sweepLost += s.Lost
	}
	if sweepLost > 0 {
		row.Notes = append(row.Notes, fmt.Sprintf("sweep: %d messages never delivered", sweepLost))
	}
	if d := p.Drain; d != nil {
		row.DrainMsgs = d.MsgPerS
		if d.Lost > 0 {
			row.Notes = append(row.Notes, fmt.Sprintf("drain: %d messages never delivered", d.Lost))
		}
		if d.LostNote != "" {
			row.Notes = append(row.Notes, "drain: "+d.LostNote)
		}
	}
	r.Peers = append(r.Peers, r.withRatios(row))
}

// addPeerSweeps adds each peer's commit rate to the sweep's points.
func (r *report) addPeerSweeps(sweeps map[string][]peerSweepPoint) {
	for label, pts := range sweeps {
		for _, p := range pts {
			for i := range r.Sweep {
				if r.Sweep[i].Producers == p.Producers {
					if r.Sweep[i].Peers == nil {
						r.Sweep[i].Peers = map[string]float64{}
					}
					r.Sweep[i].Peers[label] = p.CommitTx
				}
			}
		}
	}
}

// pacedRateText says at what rate the paced columns were measured.
func (r *report) pacedRateText() string {
	if p := r.measured.paced; p != nil {
		return fmt.Sprintf("%.0f tx/s", p.rate)
	}
	return "not run (no latency phase)"
}
