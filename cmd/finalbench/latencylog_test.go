package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The latency log has one line a delivered message, in commit order, with
// its commit, its delivery and the latency between them in milliseconds
// from the producers' start; a message committed but not delivered has
// no line, a duplicate delivery does not move the first, and a delivery
// recorded before its commit counts 0, as latency() counts it. The start
// goes to a file of its own beside the log.
func TestLatencyLogListsDeliveriesInCommitOrder(t *testing.T) {
	tr := newTracker()
	start := time.Unix(1000, 0)
	tr.start = start
	ms := func(f float64) time.Time { return start.Add(time.Duration(f * float64(time.Millisecond))) }
	tr.committed([]uint64{2}, ms(5))
	tr.committed([]uint64{1}, ms(10))
	tr.committed([]uint64{3}, ms(12)) // never delivered
	tr.committed([]uint64{4}, ms(14)) // recorded after its delivery: latency 0
	tr.delivered(4, ms(13.5))
	tr.delivered(1, ms(11.5))
	tr.delivered(2, ms(25))
	tr.delivered(1, ms(40)) // a duplicate
	path := filepath.Join(t.TempDir(), "lat.tsv")
	if err := tr.writeLog(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "commit_ms\tdelivered_ms\tlatency_ms\n" +
		"5.000\t25.000\t20.000\n" +
		"10.000\t11.500\t1.500\n" +
		"14.000\t13.500\t0.000\n"
	if got := string(b); got != want {
		t.Fatalf("latency log:\n%s\nwant:\n%s", strings.TrimSpace(got), strings.TrimSpace(want))
	}
	// Beside it, the start its times count from, to line it up with other
	// tools' wall-clock times (bench/vcpuprobe).
	b, err = os.ReadFile(filepath.Join(filepath.Dir(path), "lat.start"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "1000.000000\n" {
		t.Fatalf("start file %q, want the start as Unix seconds, 1000.000000", got)
	}
}
