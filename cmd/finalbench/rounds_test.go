package main

import (
	"math"
	"testing"

	"github.com/finalbus/final"
)

// The commit rounds are reported as the pair of the median round by end
// to end; the library's duplicates and losses are summed over the rounds,
// so that one round's loss shows.
func TestMedianPairSumsLossesAndDuplicates(t *testing.T) {
	stacks := []rawStackResult{{commitTx: 100, e2eTx: 100}, {commitTx: 200, e2eTx: 200}, {commitTx: 100, e2eTx: 100}}
	libs := []libResult{
		{commitTx: 95, e2eTx: 90, dups: 1},   // 0.90
		{commitTx: 210, e2eTx: 140, lost: 2}, // 0.70
		{commitTx: 99, e2eTx: 80},            // 0.80: the median
	}
	stack, lib, m := medianPair(stacks, libs)
	if m != 2 || stack.e2eTx != 100 || lib.e2eTx != 80 || lib.commitTx != 99 || lib.dups != 1 || lib.lost != 2 {
		t.Fatalf("medianPair = round %d, limit %+v, library %+v; want round 2 (80 of 100), 1 duplicate and 2 lost", m, stack, lib)
	}
}

// The drain's raw rate is the one measured beside it when there is one,
// else the raw limit's; every drain ratio (the library's, the peers') is
// to that rate.
func TestDrainLimitPrefersTheRatesMeasuredBeside(t *testing.T) {
	pub := &rawPublishResult{confirmed: 12000, consumed: 10000}
	for _, c := range []struct {
		m    measured
		want float64
	}{
		{measured{}, 0},
		{measured{rawPub: pub}, 10000},
		{measured{rawPub: pub, rawDrain: 8000}, 8000},
	} {
		if got := c.m.drainLimit(); got != c.want {
			t.Errorf("drainLimit() of %+v = %v, want %v", c.m, got, c.want)
		}
	}
}

// The drain's memory check is what Options documents: twice
// DispatchQueueBytes of outbox messages plus Prefetch deliveries.
func TestMemoryBoundIsTheDocumentedOne(t *testing.T) {
	o := final.DefaultOptions()
	if got, want := memoryBound(o, 65536), float64(2*64+final.DefaultPrefetch/16); got != want {
		t.Errorf("memoryBound(defaults, 64 KiB) = %v MiB, want %v", got, want)
	}
	if got, want := memoryBound(o.WithPrefetch(32).WithDispatchQueueBytes(8<<20), 1<<20), float64(2*8+32); got != want {
		t.Errorf("memoryBound(prefetch 32, 8 MiB queue, 1 MiB) = %v MiB, want %v", got, want)
	}
}

// The drain's rounds are reported as a pair, the round whose ratio is the
// median, not as medians taken figure by figure, which pair a drain with
// another round's raw rate.
func TestMedianRoundKeepsThePair(t *testing.T) {
	ratios := []float64{0.71, 0.91, 0.72}
	if got := medianRound(len(ratios), func(i int) float64 { return ratios[i] }); got != 2 {
		t.Errorf("medianRound(0.71, 0.91, 0.72) = round %d, want 2 (0.72)", got)
	}
	even := []float64{0.9, 0.6, 0.8, 0.7}
	if got := medianRound(len(even), func(i int) float64 { return even[i] }); got != 3 {
		t.Errorf("medianRound(0.9, 0.6, 0.8, 0.7) = round %d, want 3 (0.7, the lower middle)", got)
	}
	if got := medianRound(1, func(int) float64 { return 1 }); got != 0 {
		t.Errorf("medianRound of one round = %d, want 0", got)
	}
}

// Every phase that runs the raw DB + broker limit chooses the raw settings
// first: with none, the raw stack had no publishers and the latency phase
// run alone waited forever.
func TestPhasesWithARawLimitChooseRawSettings(t *testing.T) {
	for _, phase := range []string{"commit", "latency", "drain", "consume", "tx10", "rawonly", "peers"} {
		c := config{phases: map[string]bool{phase: true}}
		if !c.usesRawBroker() {
			t.Errorf("-phases %s: the raw settings are not chosen", phase)
		}
	}
	if (config{phases: map[string]bool{"libonly": true}}).usesRawBroker() {
		t.Error("-phases libonly: chooses raw settings it does not use")
	}
}

// TestInSeries checks the drain the broker and the store allow together:
// a message costs the time of each, and an unknown rate gives no figure.
func TestInSeries(t *testing.T) {
	if got := inSeries(30000, 120000); math.Abs(got-24000) > 1e-6 {
		t.Errorf("inSeries(30000, 120000) = %v, want 24000 (0.80 of the broker's rate)", got)
	}
	if got := inSeries(30000, 0); got != 0 {
		t.Errorf("inSeries without the store's rate = %v, want 0", got)
	}
	if got := inSeries(0, 120000); got != 0 {
		t.Errorf("inSeries without the broker's rate = %v, want 0", got)
	}
}
