package claim

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/finalbus/final/outbox"
)

// Own is the rows that a store's own open held claims hold (outbox.Holder).
// Another claim of the same store passes over them before it reads or
// locks anything: their transactions hold them locked, so its lock would
// skip them anyway, but only after the server had found and tried each.
// A relay keeps OutboxHeldClaims claims open while their messages are
// published, and each new claim's scan meets the rows of the one before it
// first, so without this every claim of a backlog's drain reads and tries
// to lock twice the rows it takes; and a store whose scan goes a page at a
// time could give up before reaching an available row behind many held
// ones.
//
// Passing them over changes nothing a claim may take: a row is in Own
// only while a claim of this store holds it (from the end of its claim to
// just after its transaction ends), and a row a claim passed over while it
// was becoming available again (its claim rolled back) is taken by the
// next one. A claim's rows leave Own at its idle bound too, however it
// ends: past it the server may have ended the claim's transaction on its
// own (the holder stuck), and the rows must be found again, as they are
// by other instances. Other instances' claims are not in Own; the lock
// still passes over those.
//
// Only a claim's search for candidates (Steps.Candidates) leaves them out.
// The rows of an order key (Steps.KeyRows, Steps.Lock) must be read and
// tried whoever holds them: a key whose first row is held must wait, not
// go on from its second.
//
// The zero value is ready to use.
type Own struct {
	mu     sync.Mutex
	claims map[*ownClaim]struct{}
}

type ownClaim struct {
	ids   []int64   // ascending
	until time.Time // the claim's idle bound, from before its first statement
}

// Range is the ids from First to Last, both included.
type Range struct{ First, Last int64 }

// Hold records the rows of a claim that holds them locked, in any order,
// until its idle bound, which must fall no later than the server's: counted
// from before the claim's first statement, and no longer than the bound the
// server was given. forget forgets them once the claim's transaction has
// ended; it may be called more than once.
func (o *Own) Hold(rows []outbox.Record, until time.Time) (forget func()) {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	slices.Sort(ids)
	c := &ownClaim{ids: ids, until: until}
	o.mu.Lock()
	if o.claims == nil {
		o.claims = map[*ownClaim]struct{}{}
	}
	o.claims[c] = struct{}{}
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		delete(o.claims, c)
		o.mu.Unlock()
	}
}

// Held returns the rows held now: by the claims not yet forgotten, within
// their idle bound. A claim past its bound is dropped, whether or not it
// is ever ended.
func (o *Own) Held() Snapshot {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	h := Snapshot{claims: make([][]int64, 0, len(o.claims))}
	for c := range o.claims {
		if !now.Before(c.until) {
			delete(o.claims, c)
			continue
		}
		h.claims = append(h.claims, c.ids)
	}
	h.Ranges = ranges(h.claims)
	return h
}

// Snapshot is the rows a store's open held claims held when Own.Held was
// called.
type Snapshot struct {
	// Ranges are the runs of consecutive held ids, ascending, none
	// adjacent to another: every id in them is held. A store's scan may
	// leave them out by a condition on the primary key (a claim of a
	// backlog holds a run of consecutive rows). Held ids outside them are
	// found by Has only.
	Ranges []Range
	claims [][]int64 // each ascending
}

// Has reports whether id is held.
func (h Snapshot) Has(id int64) bool {
	for _, ids := range h.claims {
		if _, ok := slices.BinarySearch(ids, id); ok {
			return true
		}
	}
	return false
}

// ranges returns the runs of consecutive ids in claims (each ascending),
// merged where they meet, ascending: at most maxRanges of them, the
// longest, so that a store's statement stays short and leaves out the
// most rows.
func ranges(claims [][]int64) []Range {
	var all []Range
	for _, ids := range claims {
		for i := 0; i < len(ids); {
			j := i + 1
			for j < len(ids) && ids[j] == ids[j-1]+1 {
				j++
			}
			all = append(all, Range{ids[i], ids[j-1]})
			i = j
		}
	}
	slices.SortFunc(all, func(a, b Range) int { return cmp.Compare(a.First, b.First) })
	merged := all[:0]
	for _, r := range all {
		if n := len(merged); n > 0 && r.First <= merged[n-1].Last+1 {
			merged[n-1].Last = max(merged[n-1].Last, r.Last)
			continue
		}
		merged = append(merged, r)
	}
	if len(merged) <= maxRanges {
		return merged
	}
	// Keep the longest, in ascending order.
	slices.SortStableFunc(merged, func(a, b Range) int { return cmp.Compare(b.Last-b.First, a.Last-a.First) })
	merged = merged[:maxRanges]
	slices.SortFunc(merged, func(a, b Range) int { return cmp.Compare(a.First, b.First) })
	return merged
}

// maxRanges bounds the ranges a scan leaves out by its statement; the
// held ids past them are passed over by Has (or by the lock).
const maxRanges = 8
