package main

import (
	"testing"
	"time"
)

// TestTrackerAccounts checks the accounting every peer is reported with:
// a committed message never delivered is lost, a second delivery is a
// duplicate, a delivery of what was never committed is a phantom.
func TestTrackerAccounts(t *testing.T) {
	tr := newTracker()
	tr.committed([]uint64{1, 2, 3, 4, 5}, time.Now())
	for _, seq := range []uint64{1, 2, 2, 3, 9} {
		tr.delivered(seq)
	}
	a := tr.account()
	if a.committed != 5 || a.delivered != 3 || a.lost != 2 || a.duplicates != 1 || a.phantoms != 1 {
		t.Fatalf("accounts = %+v, want 5 committed, 3 delivered, 2 lost, 1 duplicate, 1 phantom", a)
	}
	if !a.lostSeqs[4] || !a.lostSeqs[5] || len(a.lostSeqs) != 2 {
		t.Fatalf("lost = %v, want 4 and 5", a.lostSeqs)
	}
}

// TestTrackerWait checks that wait ends when every message is in, and
// gives up after grace without a new delivery.
func TestTrackerWait(t *testing.T) {
	tr := newTracker()
	tr.committed([]uint64{1, 2}, time.Now())
	tr.delivered(1)
	tr.delivered(2)
	if complete, last := tr.wait(2, time.Minute, time.Minute, 0); !complete || last.IsZero() {
		t.Fatalf("wait = %v, %v; want complete", complete, last)
	}

	tr = newTracker()
	tr.committed([]uint64{1, 2}, time.Now())
	tr.delivered(1)
	start := time.Now()
	if complete, _ := tr.wait(2, 50*time.Millisecond, time.Minute, 0); complete {
		t.Fatal("wait: complete with a message missing")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("wait gave up after %s, want about the 50ms grace", took)
	}
	if a := tr.account(); a.lost != 1 {
		t.Fatalf("lost = %d, want 1", a.lost)
	}
}
