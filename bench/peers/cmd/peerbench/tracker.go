package main

import (
	"slices"
	"sync"
	"time"
)

// latency is commit-to-delivery time in milliseconds.
type latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// tracker records, per message id, when its transaction committed and
// when it was first delivered, and counts the deliveries of a message
// already delivered.
type tracker struct {
	mu       sync.Mutex
	commit   map[uint64]time.Time
	recv     map[uint64]time.Time
	dups     int64
	lastNew  time.Time // when the latest first delivery arrived
	received int64     // distinct messages delivered
}

func newTracker() *tracker {
	return &tracker{commit: map[uint64]time.Time{}, recv: map[uint64]time.Time{}}
}

// committed records that seqs committed at at.
func (t *tracker) committed(seqs []uint64, at time.Time) {
	t.mu.Lock()
	for _, s := range seqs {
		t.commit[s] = at
	}
	t.mu.Unlock()
}

// delivered records a delivery of seq.
func (t *tracker) delivered(seq uint64) {
	now := time.Now()
	t.mu.Lock()
	if _, dup := t.recv[seq]; dup {
		t.dups++
	} else {
		t.recv[seq] = now
		t.received++
		t.lastNew = now
	}
	t.mu.Unlock()
}

func (t *tracker) distinct() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.received
}

// wait waits until want distinct messages were delivered, or no new one
// came for grace, or maxWait passed; then, for linger, it goes on counting
// duplicates. It reports whether every message came, and when the last new
// one did.
func (t *tracker) wait(want int64, grace, maxWait, linger time.Duration) (complete bool, last time.Time) {
	start := time.Now()
	seen, progress := t.distinct(), start
	for {
		n := t.distinct()
		if n >= want {
			complete = true
			break
		}
		now := time.Now()
		if n != seen {
			seen, progress = n, now
		}
		if now.Sub(progress) > grace || now.Sub(start) > maxWait {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if complete {
		time.Sleep(linger) // counting late duplicates, not synchronising
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return complete, t.lastNew
}

// accounts is what a phase's messages became.
type accounts struct {
	committed, delivered, lost, duplicates, phantoms int64
	lostSeqs                                         map[uint64]bool
}

// account compares the committed messages with the delivered ones.
func (t *tracker) account() accounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := accounts{committed: int64(len(t.commit)), duplicates: t.dups, lostSeqs: map[uint64]bool{}}
	for s := range t.commit {
		if _, ok := t.recv[s]; ok {
			a.delivered++
		} else {
			a.lost++
			a.lostSeqs[s] = true
		}
	}
	for s := range t.recv {
		if _, ok := t.commit[s]; !ok {
			a.phantoms++
		}
	}
	return a
}

// latency is commit to first delivery of the messages delivered.
func (t *tracker) latency() latency {
	t.mu.Lock()
	defer t.mu.Unlock()
	ds := make([]float64, 0, len(t.recv))
	for seq, r := range t.recv {
		if c, ok := t.commit[seq]; ok {
			ds = append(ds, max(0, float64(r.Sub(c))/float64(time.Millisecond)))
		}
	}
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return latency{P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1]}
}
