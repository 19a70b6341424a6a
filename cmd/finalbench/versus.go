package main

import (
	"fmt"
	"strings"
)

// libRow names the library's row of the peers table.
const libRow = "final (this run)"

// sameJob is the share of its commits a system must deliver within the
// commit phase for its commit rate to be the library's job: one that
// delivers less defers its broker work and leaves a backlog that grows
// (Watermill's forwarder, one message in flight, falls seconds behind).
const sameJob = 0.9

// slowerPeer is the share of the library's commit rate below which a
// peer's full-load p99 is flagged: its queues behind the broker's stalls
// are shorter.
const slowerPeer = 0.9

// pacedReach is the share of the library's paced commit rate below which
// a peer's paced p99 is flagged: it did not carry the same load.
const pacedReach = 0.97

// versus compares the library's row of the peers table with each peer's,
// figure by figure: ahead is a higher rate, a lower p99, fewer messages
// lost; level is the same figure. A commit rate whose messages the peer did
// not deliver within the phase is flagged beside its verdict, as are a
// full-load p99 of a peer committing below slowerPeer of the library's
// rate and a paced p99 of a peer below pacedReach of its paced rate: the
// verdict stands, and the reader sees why the peer's figure differs. The library's
// lost count is its commit phase's (its drain ends only once every message
// arrived, or the run fails); a peer's is all its phases' (the sweep's
// too).
func (r *report) versus() []string {
	var lib *peerRow
	var out []string
	for i, p := range r.Peers {
		if p.System == libRow {
			lib = &r.Peers[i]
			continue
		}
		if lib == nil || strings.HasPrefix(p.System, "raw") {
			continue
		}
		var figs []string
		// higher adds a figure where more is better and both systems
		// measured it, and reports whether it did.
		higher := func(name string, mine, theirs float64, unit string) bool {
			if mine == 0 || theirs == 0 {
				return false
			}
			figs = append(figs, fmt.Sprintf("%s %s (%.0f vs %.0f%s)", name, verdict(mine, theirs), mine, theirs, unit))
			return true
		}
		if higher("commit", lib.CommitTx, p.CommitTx, " tx/s") && p.E2ETx > 0 && p.E2ETx < sameJob*p.CommitTx {
			last := &figs[len(figs)-1]
			*last = strings.TrimSuffix(*last, ")") + fmt.Sprintf(", the peer delivering %.2f of its commits within the phase)", p.E2ETx/p.CommitTx)
		}
		higher("end to end", lib.E2ETx, p.E2ETx, " tx/s")
		if lib.P99 > 0 && p.P99 > 0 {
			fig := fmt.Sprintf("p99 %s (%.1f vs %.1f ms", verdict(-lib.P99, -p.P99), lib.P99, p.P99)
			if p.CommitTx < slowerPeer*lib.CommitTx {
				fig += fmt.Sprintf(", the peer committing at %.2f of final's rate", p.CommitTx/lib.CommitTx)
			}
			figs = append(figs, fig+")")
		}
		if lib.PacedP99 > 0 && p.PacedP99 > 0 {
			fig := fmt.Sprintf("p99 paced %s (%.1f vs %.1f ms", verdict(-lib.PacedP99, -p.PacedP99), lib.PacedP99, p.PacedP99)
			if p.PacedTx < pacedReach*lib.PacedTx {
				fig += fmt.Sprintf(", the peer reaching %.2f of final's paced rate", p.PacedTx/lib.PacedTx)
			}
			figs = append(figs, fig+")")
		}
		higher("drain", lib.DrainMsgs, p.DrainMsgs, " msg/s")
		figs = append(figs, fmt.Sprintf("lost %s (%d vs %d)", verdict(float64(-lib.Lost), float64(-p.Lost)), lib.Lost, p.Lost))
		out = append(out, fmt.Sprintf("final vs %s: %s", p.System, strings.Join(figs, ", ")))
	}
	return out
}

// verdict compares two figures where more is better.
func verdict(mine, theirs float64) string {
	switch {
	case mine > theirs:
		return "ahead"
	case mine == theirs:
		return "level"
	}
	return "BEHIND"
}
