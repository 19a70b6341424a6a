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
// latency exceeds lag, in the library runs it watches (flightWatch), writes
// them to path, once. A stall that a whole-run -trace seldom meets (its cost
// changes the timing) can then be seen goroutine by goroutine (go tool
// trace, or bench/tracewaits). Its one goroutine, which writes the
// snapshot, is waited for by stop.
type flight struct {
	fr   *trace.FlightRecorder
	lag  time.Duration
	path string
	once sync.Once
	done chan struct{} // closed once the snapshot is written (or failed)
	// settle is how long the snapshot waits after the slow delivery, so
	// that the stall's end and its last deliveries are in it.
	settle time.Duration
}

// startFlight starts the recorder; nil when lag <= 0. It keeps at least the
// last 5 s, in up to 64 MiB (a paced phase's trace is about 1 MB a second).
func startFlight(lag time.Duration, path string) (*flight, error) {
	if lag <= 0 {
		return nil, nil
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 5 * time.Second, MaxBytes: 64 << 20})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("flight recorder: %w", err)
	}
	return &flight{fr: fr, lag: lag, path: path, done: make(chan struct{}), settle: time.Second}, nil
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
			time.Sleep(f.settle) // a delay for the stall to end in, not a synchronisation
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

// flightWatch is the recorder a library run's tracker tells of its
// deliveries: -flight-lag's in the paced latency phase (latencyPhase) or,
// with -flight-full, in every other library run (the commit and 10 msg/tx
// rounds, libonly, the sweep); nil in the others.
func (c *config) flightWatch(latencyPhase bool) *flight {
	if latencyPhase == c.flightFull {
		return nil
	}
	return c.flight
}
