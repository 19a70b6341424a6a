// Package claim is the claim of the SQL stores (outbox.Store.Claim and
// outbox.Holder.ClaimHeld) over each store's statements: which rows a claim
// takes, in what order, within what bounds. The stores differ in their SQL
// and in how they lock; the rules are here once.
package claim

import (
	"cmp"
	"context"
	"slices"
)

// Candidate is a row a claim may take: what the claim decides on. The
// message is read for the rows taken only, unless the store read it along
// (Body; nil otherwise).
type Candidate struct {
	ID       int64
	Key      int64 // the order key, 0 for none
	Attempts int
	Size     int    // bytes of the stored message
	Body     []byte // the stored message, when read along
}

// KeyRow is one of an order key's first rows, as Steps.KeyRows reads
// them.
type KeyRow struct {
	Candidate
	Ready bool // available now
	Mine  bool // leased to the claiming owner, which is sending it already
}

// Steps are a store's statements of one claim, run in the claim's
// transaction; Rows decides with them which rows the claim takes.
// The stores differ in their SQL and in how they lock; the rules of
// outbox.Store.Claim (first available first, a key's rows in id order, rows
// others hold passed over, the byte budget) are Rows's, the same for every
// store.
type Steps interface {
	// Candidates returns up to limit available rows, locked by the claim
	// (or under a lock of the whole table), first available first: none
	// whose order key is in skip, none of taken (the rows an earlier pass
	// took). Rows other transactions hold are passed over, not waited for.
	// budget, when above 0, lets it stop early once the sizes of the rows
	// it has reach it.
	Candidates(ctx context.Context, limit, budget int, skip []int64, taken []Candidate) ([]Candidate, error)
	// KeyRows returns, for each keys[i], its rows with an id up to tops[i],
	// in order of key and id, with whether each is available and whether
	// the claiming owner leased it already. A key's rows must be all of
	// them from its lowest id on, with no gap (a row left out would let a
	// later one go before it), except that a store may leave out the
	// owner's leased rows that are not yet available, which Rows passes
	// over anyway. At most counts[i] per key that are not those (a store
	// may return more: Rows stops at counts[i]), and at most limit rows in
	// all (a truncated list only shortens a key's run). Where Lock returns
	// the rows as they are, they must be complete candidates (Size
	// included: the byte budget counts it).
	KeyRows(ctx context.Context, keys, tops, counts []int64, limit int) ([]KeyRow, error)
	// Lock locks those of rows (KeyRows's, as read) that are still
	// available and that no other transaction holds, and returns them as
	// candidates: ID, Key and Size at least (and Attempts and Body where
	// the store's records take them from the candidates). A store that
	// holds the whole table returns them as they are.
	Lock(ctx context.Context, rows []Candidate) ([]Candidate, error)
	// Take is given the rows a pass takes, in id order, before the next
	// pass looks for more: a leasing claim leases them there.
	Take(ctx context.Context, rows []Candidate) error
}

// maxClaimPasses bounds the scans of one claim that look past keys held
// back by an earlier row (Rows says 4).
const maxClaimPasses = 4

// maxOrderScan bounds the rows a claim reads to put a key's rows in order,
// per candidate (Rows says 8).
const maxOrderScan = 8

// Rows is the claim of outbox.Store.Claim and outbox.Holder.ClaimHeld on
// top of a store's statements: it returns the rows the claim takes, up to
// limit, and up to maxBytes of messages (0: no bound; the first row
// whatever its size), in id order.
//
// Candidates come first available first; but a key's rows must go in id
// order, so for each key among them the claim takes the key's first rows
// by id instead, as many as it has candidates, up to the first one that
// is not available or is held by another claim. Rows still leased to the
// owner are passed over: it is sending them already, ahead of these. The
// rows of a key held back stay at the head of the next scan, so a next
// pass (up to 4 in all) looks past the keys seen so far, and a key stuck
// behind a failing row does not stall the others. A key's rows are read
// up to 8 per candidate. The cut at
// maxBytes goes in id order: what a key loses is the end of its run.
func Rows(ctx context.Context, steps Steps, limit, maxBytes int) ([]Candidate, error) {
	var (
		taken []Candidate
		bytes int
		seen  []int64 // order keys handled by an earlier pass
	)
	enough := func() bool { return maxBytes > 0 && bytes >= maxBytes }
	for pass := 0; pass < maxClaimPasses && len(taken) < limit && !enough(); pass++ {
		budget := 0 // bytes the pass may still take; 0: no bound
		if maxBytes > 0 {
			budget = maxBytes - bytes
		}
		cands, err := steps.Candidates(ctx, limit-len(taken), budget, seen, taken)
		if err != nil {
			return nil, err
		}
		if len(cands) == 0 {
			break
		}
		ok, keys, heldBack, err := inOrder(ctx, steps, cands)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(ok, byID)
		n := 0
		for n < len(ok) && !enough() {
			bytes += ok[n].Size
			n++
		}
		if ok = ok[:n]; len(ok) > 0 {
			if err := steps.Take(ctx, ok); err != nil {
				return nil, err
			}
			taken = append(taken, ok...)
		}
		if !heldBack {
			break // no key was held back: the scan is complete
		}
		seen = append(seen, keys...)
	}
	slices.SortFunc(taken, byID)
	return taken, nil
}

func byID(a, b Candidate) int { return cmp.Compare(a.ID, b.ID) }

// IDs returns the ids of cs, in their order.
func IDs(cs []Candidate) []int64 {
	ids := make([]int64, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// inOrder returns the rows of cands the claim may take, in their place the
// rows that keep each key in order (see Rows), the order keys among
// cands, and whether any of those keys yielded nothing.
func inOrder(ctx context.Context, steps Steps, cands []Candidate) (ok []Candidate, keys []int64, heldBack bool, err error) {
	perKey := map[int64]int{}    // candidates by key
	highest := map[int64]int64{} // highest candidate id by key
	for _, c := range cands {
		if c.Key == 0 {
			ok = append(ok, c)
			continue
		}
		if perKey[c.Key] == 0 {
			keys = append(keys, c.Key)
		}
		perKey[c.Key]++
		highest[c.Key] = max(highest[c.Key], c.ID)
	}
	if len(keys) == 0 {
		return ok, nil, false, nil
	}
	tops, counts := make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		tops[i], counts[i] = highest[k], int64(perKey[k])
	}
	rows, err := steps.KeyRows(ctx, keys, tops, counts, maxOrderScan*len(cands))
	if err != nil {
		return nil, nil, false, err
	}
	heads := map[int64][]KeyRow{}
	for _, r := range rows {
		heads[r.Key] = append(heads[r.Key], r)
	}
	// The run of each key: its available rows from the lowest on, passing
	// over those the owner is sending already, at most as many as it has
	// candidates.
	var wanted []Candidate
	for _, k := range keys {
		run := heads[k][:0]
		for _, r := range heads[k] {
			if r.Mine && !r.Ready {
				continue
			}
			if !r.Ready || len(run) == perKey[k] {
				break
			}
			run = append(run, r)
		}
		heads[k] = run
		for _, r := range run {
			wanted = append(wanted, r.Candidate)
		}
	}
	if len(wanted) == 0 {
		return ok, keys, true, nil
	}
	// Lock them; one held by another claim, or leased meanwhile, ends its
	// key's run.
	locked, err := steps.Lock(ctx, wanted)
	if err != nil {
		return nil, nil, false, err
	}
	got := make(map[int64]Candidate, len(locked))
	for _, c := range locked {
		got[c.ID] = c
	}
	for _, k := range keys {
		n := 0
		for _, r := range heads[k] {
			c, isLocked := got[r.ID]
			if !isLocked {
				break
			}
			ok = append(ok, c)
			n++
		}
		if n == 0 {
			heldBack = true
		}
	}
	return ok, keys, heldBack, nil
}
