package claim_test

import (
	"slices"
	"testing"
	"time"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

func rows(ids ...int64) []outbox.Record {
	recs := make([]outbox.Record, len(ids))
	for i, id := range ids {
		recs[i] = outbox.Record{ID: id}
	}
	return recs
}

func TestOwnHeldRangesAndIDs(t *testing.T) {
	var o claim.Own
	later := time.Now().Add(time.Hour)
	if h := o.Held(); len(h.Ranges) != 0 || h.Has(1) {
		t.Fatalf("empty Own holds %v", h.Ranges)
	}
	releaseA := o.Hold(rows(12, 10, 11), later) // a run, in any order
	releaseB := o.Hold(rows(13, 14, 20), later) // meets A's run, and one apart
	releaseC := o.Hold(rows(30, 32, 31), later) // a run of its own
	h := o.Held()
	want := []claim.Range{{10, 14}, {20, 20}, {30, 32}}
	if !slices.Equal(h.Ranges, want) {
		t.Fatalf("Ranges = %v, want %v", h.Ranges, want)
	}
	for id := int64(0); id < 40; id++ {
		held := id >= 10 && id <= 14 || id == 20 || id >= 30 && id <= 32
		if h.Has(id) != held {
			t.Errorf("Has(%d) = %v, want %v", id, h.Has(id), held)
		}
	}
	releaseB()
	releaseB() // a second release changes nothing
	if h := o.Held(); !slices.Equal(h.Ranges, []claim.Range{{10, 12}, {30, 32}}) || h.Has(13) || h.Has(20) {
		t.Fatalf("after B's release: Ranges = %v, Has(13) %v, Has(20) %v", h.Ranges, h.Has(13), h.Has(20))
	}
	releaseA()
	releaseC()
	if h := o.Held(); len(h.Ranges) != 0 || h.Has(10) || h.Has(31) {
		t.Fatalf("after every release: Ranges = %v", h.Ranges)
	}
}

// TestOwnHeldKeepsTheLongestRanges: past the ranges a statement names,
// the shortest are left to Has.
func TestOwnHeldKeepsTheLongestRanges(t *testing.T) {
	var o claim.Own
	var ids []int64
	for i := int64(0); i < 20; i++ { // 20 runs; run i is i+1 long
		for k := int64(0); k <= i; k++ {
			ids = append(ids, 100*i+k)
		}
	}
	o.Hold(rows(ids...), time.Now().Add(time.Hour))
	h := o.Held()
	var want []claim.Range
	for i := int64(20 - len(h.Ranges)); i < 20; i++ {
		want = append(want, claim.Range{First: 100 * i, Last: 100*i + i})
	}
	if len(h.Ranges) != 8 || !slices.Equal(h.Ranges, want) { // maxRanges
		t.Fatalf("Ranges = %v, want the longest runs, ascending: %v", h.Ranges, want)
	}
	for _, id := range ids {
		if !h.Has(id) {
			t.Fatalf("Has(%d) = false for a held id outside the ranges", id)
		}
	}
	if h.Has(50) {
		t.Fatal("Has(50) = true")
	}
}

// TestOwnHeldEndsAtTheIdleBound: a claim's rows are no longer passed over
// past its idle bound, released or not (the server may have ended it).
func TestOwnHeldEndsAtTheIdleBound(t *testing.T) {
	var o claim.Own
	o.Hold(rows(1, 2, 3), time.Now().Add(-time.Millisecond)) // past its bound, never released
	o.Hold(rows(7), time.Now().Add(time.Hour))
	h := o.Held()
	if !slices.Equal(h.Ranges, []claim.Range{{7, 7}}) || h.Has(2) || !h.Has(7) {
		t.Fatalf("Ranges = %v, Has(2) %v, Has(7) %v; want only the claim within its bound", h.Ranges, h.Has(2), h.Has(7))
	}
}
