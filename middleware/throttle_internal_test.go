package middleware

import (
	"testing"
	"time"
)

func TestLimiterAllowsBurstThenPaces(t *testing.T) {
	l := &limiter{every: 100 * time.Millisecond, burst: 3}
	now := time.Unix(1000, 0)
	var waits []time.Duration
	for i := 0; i < 5; i++ {
		waits = append(waits, l.reserve(now))
	}
	want := []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits = %v, want %v", waits, want)
		}
	}
	// After a quiet second the bucket is full again, but no fuller.
	later := now.Add(time.Second)
	for i := 0; i < 3; i++ {
		if w := l.reserve(later); w != 0 {
			t.Fatalf("reserve %d after a pause waited %v", i, w)
		}
	}
	if w := l.reserve(later); w != 100*time.Millisecond {
		t.Fatalf("fourth reserve after a pause waited %v, want 100ms", w)
	}
}
