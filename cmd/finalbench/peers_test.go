package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// peerSample is peerbench's output as it prints it (a smoke run's, cut
// down).
const peerSample = `{
  "system": "watermill",
  "db": "mysql",
  "versions": {"github.com/ThreeDotsLabs/watermill-sql/v4": "v4.1.2"},
  "setup": "watermill-sql mysql schema",
  "commit": {"producers": 8, "commit_tx_per_s": 900, "e2e_tx_per_s": 500,
    "latency_ms": {"p50": 1397.5, "p99": 2091.5, "max": 2100},
    "committed": 2728, "delivered": 2722, "lost": 6,
    "lost_note": "of 6 lost, 6 rows are in the table behind the subscriber's acknowledged position",
    "duplicates": 0, "phantoms": 0, "all_delivered": false},
  "paced": {"producers": 8, "commit_tx_per_s": 900, "e2e_tx_per_s": 400,
    "latency_ms": {"p50": 1200, "p99": 2500, "max": 2600},
    "committed": 5000, "delivered": 4998, "lost": 2, "lost_note": "of 2 lost, 2 rows are in the table ahead of the subscriber's acknowledged position",
    "duplicates": 0, "phantoms": 0, "all_delivered": false},
  "drain": {"messages": 2000, "msg_per_s": 580, "delivered": 2000, "lost": 0, "duplicates": 1},
  "sweep": [{"producers": 2, "commit_tx_per_s": 700}, {"producers": 8, "commit_tx_per_s": 950}],
  "totals": {"committed": 9728, "lost": 8, "duplicates": 1, "phantoms": 0}
}`

// TestPeerRows checks that a peer's output becomes a row beside the
// library's, with ratios to the same run's limits, every phase's lost and
// duplicate messages, and its sweep in the chart's points.
func TestPeerRows(t *testing.T) {
	var out peerOutput
	if err := json.Unmarshal([]byte(peerSample), &out); err != nil {
		t.Fatal(err)
	}
	r := &report{}
	r.measured = measured{
		rawTx:  4000,
		stack:  &rawStackResult{commitTx: 2000, e2eTx: 2000, lat: latency{p50: 2, p99: 30}},
		rawPub: &rawPublishResult{confirmed: 12000, consumed: 10000},
		lib:    &libResult{commitTx: 1500, e2eTx: 1500, lat: latency{p50: 1, p99: 10}},
		drain:  &drainResult{delivered: 5000, dups: 2},
		paced:  &pacedResult{rate: 1000, stack: latency{p99: 3}, lib: latency{p99: 4}, stackTx: 1000, libTx: 1000},
	}
	r.addLimitRows()
	r.addPeer(&out)
	if len(r.Peers) != 4 {
		t.Fatalf("%d rows, want raw DB, limit, final and the peer", len(r.Peers))
	}
	limit, lib, peer := r.Peers[1], r.Peers[2], r.Peers[3]
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("final commit / limit", lib.CommitVsLimit, 0.75)
	near("limit p50 at full load", limit.P50, 2) // the limit's own latency, beside the peers'
	near("limit p99 at full load", limit.P99, 30)
	near("final drain / raw", lib.DrainVsRaw, 0.5)
	if lib.Duplicates != 2 {
		t.Errorf("final duplicates = %d, want the drain's 2", lib.Duplicates)
	}
	if peer.System != "Watermill SQL forwarder v4.1.2" {
		t.Errorf("peer label = %q", peer.System)
	}
	near("peer commit / raw DB", peer.CommitVsRaw, 900.0/4000)
	near("peer commit / limit", peer.CommitVsLimit, 900.0/2000)
	near("peer e2e / limit", peer.E2EVsLimit, 500.0/2000)
	near("peer drain / raw", peer.DrainVsRaw, 580.0/10000)
	if peer.Lost != 8 || peer.Duplicates != 1 || peer.Committed != 9728 {
		t.Errorf("peer lost %d, duplicates %d, committed %d; want every phase's 8, 1, 9728", peer.Lost, peer.Duplicates, peer.Committed)
	}
	near("limit paced p99", limit.PacedP99, 3)
	near("final paced p99", lib.PacedP99, 4)
	near("peer paced p99", peer.PacedP99, 2500)
	near("peer paced commit", peer.PacedTx, 900)
	table := r.table()
	for _, want := range []string{"Watermill SQL forwarder v4.1.2", "NOTE Watermill SQL forwarder v4.1.2: commit phase: 6 of 2728 messages never delivered",
		"behind the subscriber's acknowledged position",
		"NOTE Watermill SQL forwarder v4.1.2: paced phase: 2 of 5000 messages never delivered",
		"NOTE Watermill SQL forwarder v4.1.2: paced phase: of 2 lost, 2 rows are in the table ahead",
		"the paced latency phase's rate, 1000 tx/s",
		"final vs Watermill SQL forwarder v4.1.2: commit ahead (1500 vs 900 tx/s, the peer delivering 0.56 of its commits within the phase), " +
			"end to end ahead (1500 vs 500 tx/s), p99 ahead (10.0 vs 2091.5 ms, the peer committing at 0.60 of final's rate), " +
			"p99 paced ahead (4.0 vs 2500.0 ms, the peer reaching 0.90 of final's paced rate), drain ahead (5000 vs 580 msg/s), lost ahead (0 vs 8)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	r.Sweep = []sweepPoint{{Producers: 2, RawTx: 1000, LibraryTx: 800}, {Producers: 8, RawTx: 4000, LibraryTx: 1500}}
	r.addPeerSweeps(map[string][]peerSweepPoint{out.label(): out.Sweep})
	if got := r.Sweep[1].Peers[out.label()]; got != 950 {
		t.Errorf("sweep at 8 producers: peer %v, want 950", got)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("results.json: %v", err)
	}
}

// TestVersus checks the verdicts against a peer that is faster on some
// figures: a higher rate or a lower p99 wins, a tie is level, a figure
// either side has not measured is left out, and a commit rate the peer
// delivered, or whose delivery it did not measure, is not flagged.
func TestVersus(t *testing.T) {
	r := &report{Peers: []peerRow{
		{System: "raw DB + broker, no outbox (the limit)", CommitTx: 3000, E2ETx: 3000},
		{System: libRow, CommitTx: 1000, E2ETx: 990, P99: 20, PacedTx: 500, PacedP99: 8, DrainMsgs: 5000},
		{System: "peer", CommitTx: 1200, E2ETx: 1150, P99: 15, PacedTx: 490, PacedP99: 6, Lost: 0},
		{System: "no e2e", CommitTx: 900, P99: 20, Lost: 3},
	}}
	got := r.versus()
	want := []string{
		"final vs peer: commit BEHIND (1000 vs 1200 tx/s), end to end BEHIND (990 vs 1150 tx/s), p99 BEHIND (20.0 vs 15.0 ms), p99 paced BEHIND (8.0 vs 6.0 ms), lost level (0 vs 0)",
		"final vs no e2e: commit ahead (1000 vs 900 tx/s), p99 level (20.0 vs 20.0 ms), lost ahead (0 vs 3)",
	}
	if len(got) != len(want) {
		t.Fatalf("versus = %q,\nwant %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("versus[%d] = %q,\nwant %q", i, got[i], want[i])
		}
	}
}
