package main

import (
	"sync/atomic"
	"testing"
	"time"
)

// Paced producers never start more transactions than the rate allows in
// the phase (each producer's first at once, the rest one interval apart).
// Only the upper bound is checked: a slow machine starts fewer, never more.
func TestProduceHoldsToTheRate(t *testing.T) {
	const (
		n    = 4
		rate = 100.0 // tx/s between the producers: one every 40 ms each
		d    = 200 * time.Millisecond
	)
	var started atomic.Int64
	commits, failed, _, err := produce(n, d, rate, func() error { started.Add(1); return nil })
	if err != nil || failed != 0 {
		t.Fatalf("produce: %d failed, %v", failed, err)
	}
	// Each producer starts at most once per interval within d, plus its
	// first: d/interval + 1 = 6 each.
	if most := int64(n * (d/(time.Duration(n/rate*float64(time.Second))) + 1)); started.Load() > most || commits != started.Load() {
		t.Errorf("%d transactions started (%d committed) at %.0f tx/s over %s, want at most %d", started.Load(), commits, rate, d, most)
	}
}
