package main

import (
	"sync/atomic"
	"testing"
	"time"
)

// Paced producers start at most one transaction per interval each (their
// first staggered within the first interval, the last possibly just past
// the phase's end, since each checks the end before its wait): at most
// d/interval + 1 each. Only the upper bound is checked: a slow machine
// starts fewer, never more.
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
	per := time.Duration(float64(n) / rate * float64(time.Second)) // each producer's interval: 40 ms
	if most := int64(n) * (int64(d/per) + 1); started.Load() > most || commits != started.Load() {
		t.Errorf("%d transactions started (%d committed) at %.0f tx/s over %s, want at most %d", started.Load(), commits, rate, d, most)
	}
}
