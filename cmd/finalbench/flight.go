package main

import (
	"fmt"
	"os"
	"runtime/trace"
	"sync"
	"time"
)

// flight is -flight-lag: the runtime's flight recorder keeps the last
// seconds of an execution trace in memory, and the first delivery whose
// latency exceeds lag writes them to path, once. A stall that a whole-run
// -trace seldom meets (its cost changes the timing) can then be seen
// goroutine by goroutine: go tool trace path.
type flight struct {
	fr   *trace.FlightRecorder
	lag  time.Duration
	path string
	once sync.Once
	done chan struct{} // closed once the snapshot is written (or failed)
}

// startFlight starts the recorder; nil when lag is 0.
func startFlight(lag time.Duration, path string) (*flight, error) {
	if lag <= 0 {
		return nil, nil
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 5 * time.Second})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("flight recorder: %w", err)
	}
	return &flight{fr: fr, lag: lag, path: path, done: make(chan struct{})}, nil
}

// observe writes the recorded window, in a goroutine of its own, the
// first time a delivery took longer than the lag; a delivery's handler
// never waits for it.
func (f *flight) observe(latency time.Duration) {
	if f == nil || latency <= f.lag {
		return
	}
	f.once.Do(func() {
		go func() {
			defer close(f.done)
			// Let the stall end and its last deliveries arrive first.
			t := time.NewTimer(time.Second)
			<-t.C
			if err := f.write(); err != nil {
				fmt.Fprintln(os.Stderr, "finalbench: flight recorder:", err)
				return
			}
			fmt.Fprintf(os.Stderr, "finalbench: a delivery took over %v: the trace of the seconds around it is in %s\n", f.lag, f.path)
		}()
	})
}

func (f *flight) write() error {
	out, err := os.Create(f.path)
	if err != nil {
		return err
	}
	if _, err := f.fr.WriteTo(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// stop waits for a snapshot under way and stops the recorder.
func (f *flight) stop() {
	if f == nil {
		return
	}
	f.once.Do(func() { close(f.done) }) // no delivery lagged: nothing to wait for
	<-f.done
	f.fr.Stop()
}
