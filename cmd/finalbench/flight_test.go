package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFlightWritesOnceWhenADeliveryLags: deliveries within the lag write
// nothing; the first one over it writes the recorder's window, once.
func TestFlightWritesOnceWhenADeliveryLags(t *testing.T) {
	dir := t.TempDir()
	within := filepath.Join(dir, "within.trace")
	f, err := startFlight(50*time.Millisecond, within)
	if err != nil {
		t.Fatal(err)
	}
	f.settle = 0
	f.observe(10 * time.Millisecond)
	f.observe(50 * time.Millisecond) // at the lag, not over it
	f.stop()                         // would wait for a snapshot under way
	if _, err := os.Stat(within); !os.IsNotExist(err) {
		t.Fatalf("a trace was written for deliveries within the lag: %v", err)
	}

	over := filepath.Join(dir, "over.trace")
	if f, err = startFlight(50*time.Millisecond, over); err != nil {
		t.Fatal(err)
	}
	f.settle = 0
	f.observe(80 * time.Millisecond)
	<-f.done // the first snapshot is written
	if err := os.Remove(over); err != nil {
		t.Fatal(err)
	}
	f.observe(90 * time.Millisecond) // a second slow delivery writes nothing more
	f.stop()
	if _, err := os.Stat(over); !os.IsNotExist(err) {
		t.Fatalf("a second slow delivery wrote the trace again: %v", err)
	}
}

// TestFlightWritesTheTrace: the snapshot holds a trace.
func TestFlightWritesTheTrace(t *testing.T) {
	over := filepath.Join(t.TempDir(), "over.trace")
	f, err := startFlight(50*time.Millisecond, over)
	if err != nil {
		t.Fatal(err)
	}
	f.settle = 0
	f.observe(80 * time.Millisecond)
	f.stop() // waits for the snapshot
	info, err := os.Stat(over)
	if err != nil {
		t.Fatalf("no trace after a delivery over the lag: %v", err)
	}
	if info.Size() == 0 {
		t.Fatal("the trace is empty")
	}
}

// TestFlightOffByDefault: without -flight-lag there is no recorder, and a
// nil one ignores deliveries.
func TestFlightOffByDefault(t *testing.T) {
	f, err := startFlight(0, filepath.Join(t.TempDir(), "flight.trace"))
	if err != nil || f != nil {
		t.Fatalf("startFlight(0) = %v, %v; want nil, nil", f, err)
	}
	f.observe(time.Hour)
	f.stop()
}

// TestTrackerTellsFlightOfSlowDeliveries: a tracker watched by a flight
// recorder writes the trace when a first delivery comes later than the lag
// after its commit; a duplicate or a quick one does not count.
func TestTrackerTellsFlightOfSlowDeliveries(t *testing.T) {
	dir := t.TempDir()
	at := time.Unix(1000, 0)
	watched := func(path string) (*flight, *tracker) {
		f, err := startFlight(50*time.Millisecond, path)
		if err != nil {
			t.Fatal(err)
		}
		f.settle = 0
		tr := newTracker()
		tr.watch = f
		tr.committed([]uint64{1, 2}, at)
		return f, tr
	}

	quick := filepath.Join(dir, "quick.trace")
	f, tr := watched(quick)
	tr.delivered(1, at.Add(10*time.Millisecond))
	tr.delivered(1, at.Add(time.Second)) // a duplicate: its first delivery was quick
	f.stop()                             // would wait for a snapshot under way
	if _, err := os.Stat(quick); !os.IsNotExist(err) {
		t.Fatalf("a quick delivery, or a duplicate, set off the recorder: %v", err)
	}

	slow := filepath.Join(dir, "slow.trace")
	f, tr = watched(slow)
	tr.delivered(2, at.Add(80*time.Millisecond))
	f.stop()
	if _, err := os.Stat(slow); err != nil {
		t.Fatalf("no trace after a delivery 80 ms after its commit: %v", err)
	}
}

// TestFlightWatchesOnePhase: the recorder watches the paced latency phase,
// or with -flight-full the other library runs, never both.
func TestFlightWatchesOnePhase(t *testing.T) {
	f := &flight{}
	for _, c := range []struct {
		full, latency bool
		want          *flight
	}{
		{full: false, latency: true, want: f},
		{full: false, latency: false, want: nil},
		{full: true, latency: true, want: nil},
		{full: true, latency: false, want: f},
	} {
		cfg := &config{flight: f, flightFull: c.full}
		if got := cfg.flightWatch(c.latency); got != c.want {
			t.Errorf("-flight-full=%v, latency phase %v: watched by %p, want %p", c.full, c.latency, got, c.want)
		}
	}
}
