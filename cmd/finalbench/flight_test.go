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
