package outboxtest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/outbox"
)

// runHeld runs the cases of outbox.Holder; a store that does not implement
// it skips them.
func runHeld(t *testing.T, h Harness) {
	t.Run("HeldClaimHidesRowsAndCommitDeletes", func(t *testing.T) { testHeldCommit(t, h) })
	t.Run("HeldCommitOfConsecutiveRows", func(t *testing.T) { testHeldCommitConsecutive(t, h) })
	t.Run("HeldRollbackChangesNothing", func(t *testing.T) { testHeldRollback(t, h) })
	t.Run("HeldFailBacksOff", func(t *testing.T) { testHeldFail(t, h) })
	t.Run("HeldClaimLetsInsertsCommit", func(t *testing.T) { testHeldInserts(t, h) })
	t.Run("HeldClaimKeepsKeyOrder", func(t *testing.T) { testHeldKeyOrder(t, h) })
	t.Run("HeldClaimOutlivesItsContext", func(t *testing.T) { testHeldOutlivesContext(t, h) })
	t.Run("HeldClaimEndsWhenIdleTooLong", func(t *testing.T) { testHeldIdle(t, h) })
	t.Run("HeldRowsAreNotWaitedFor", func(t *testing.T) { testHeldNotWaitedFor(t, h) })
	t.Run("ConcurrentHeldClaimsDisjoint", func(t *testing.T) { testHeldConcurrent(t, h) })
	t.Run("HeldClaimsPassOverTheStoresOwnHeldRows", func(t *testing.T) { testHeldPassOverOwn(t, h) })
}

// newHolder returns a store of h that implements outbox.Holder, or skips.
func newHolder(t *testing.T, h Harness) (outbox.Holder, *sql.DB) {
	t.Helper()
	s, db := h.New(t)
	hs, ok := s.(outbox.Holder)
	if !ok {
		t.Skip("the store does not implement outbox.Holder")
	}
	return hs, db
}

func claimHeld(t *testing.T, s outbox.Holder, owner string, limit int) outbox.Held {
	t.Helper()
	held, err := s.ClaimHeld(ctx, owner, limit, 0, time.Minute)
	if err != nil {
		t.Fatalf("ClaimHeld: %v", err)
	}
	return held
}

// mustClaimHeld is a held claim of up to 10 rows by owner "a" under
// claimCtx with the idle bound idle, which must find rows.
func mustClaimHeld(t *testing.T, s outbox.Holder, claimCtx context.Context, idle time.Duration) outbox.Held {
	t.Helper()
	held, err := s.ClaimHeld(claimCtx, "a", 10, 0, idle)
	if err != nil || held == nil {
		t.Fatalf("ClaimHeld = %v, %v; want a claim", held, err)
	}
	return held
}

// records returns the records of held; none for nil.
func records(held outbox.Held) []outbox.Record {
	if held == nil {
		return nil
	}
	return held.Records()
}

func testHeldCommit(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, m := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	c, _ := insert(t, s, nil, 0)
	insert(t, s, nil, time.Hour) // not available
	held := claimHeld(t, s, "a", 10)
	recs := records(held)
	if !equal(ids(recs), []int64{a, b, c}) {
		t.Fatalf("held claim took %v, want %v", ids(recs), []int64{a, b, c})
	}
	if recs[0].Err != nil || recs[0].Message.UUID != m.UUID || string(recs[0].Message.Payload) != "p" {
		t.Fatalf("held message %+v (err %v), want %+v", recs[0].Message, recs[0].Err, m)
	}
	if got := claim(t, s, "b", 10, time.Hour); len(got) != 0 {
		t.Fatalf("a leased claim took %v of the held rows", ids(got))
	}
	if other := claimHeld(t, s, "b", 10); other != nil {
		other.Rollback()
		t.Fatalf("a second held claim took %v of the held rows", ids(other.Records()))
	}
	if err := held.Commit(ctx, []int64{a, c}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if n := length(t, s); n != 2 {
		t.Fatalf("rows after the commit = %d, want 2 (b and the one not due)", n)
	}
	got := claim(t, s, "b", 10, time.Hour)
	if len(got) != 1 || got[0].ID != b || got[0].Attempts != 0 {
		t.Fatalf("after the commit claimed %v, want row %d at once, with no attempt", got, b)
	}
}

// testHeldCommitConsecutive commits consecutive rows of a claim (which a
// store may delete by a range of ids) between rows that must stay: the
// claim's first row, not confirmed, and a row after them, not due.
func testHeldCommitConsecutive(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	c, _ := insert(t, s, nil, 0)
	d, _ := insert(t, s, nil, 0)
	later, _ := insert(t, s, nil, time.Hour) // not available
	held := claimHeld(t, s, "a", 10)
	if !equal(ids(records(held)), []int64{a, b, c, d}) {
		t.Fatalf("held claim took %v, want %v", ids(records(held)), []int64{a, b, c, d})
	}
	if err := held.Commit(ctx, []int64{d, b, c}); err != nil { // in any order
		t.Fatalf("Commit: %v", err)
	}
	if n := length(t, s); n != 2 {
		t.Fatalf("rows after the commit = %d, want 2 (%d, and %d not due)", n, a, later)
	}
	got := claim(t, s, "b", 10, time.Hour)
	if len(got) != 1 || got[0].ID != a {
		t.Fatalf("after the commit claimed %v, want row %d", ids(got), a)
	}
}

// testHeldPassOverOwn: a claim finds the available row behind many rows
// another claim of the same store holds, however it scans (a store that
// scans a page at a time and locks after would give up after its last
// page of held rows), and rows a claim held are found again once it has
// rolled back.
func testHeldPassOverOwn(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	const n = 40
	var first, last int64
	for i := range n + 1 {
		id, _ := insert(t, s, nil, 0)
		if i == 0 {
			first = id
		}
		last = id
	}
	a := claimHeld(t, s, "a", n)
	t.Cleanup(func() { _ = a.Rollback() }) // a no-op once it has ended
	if got := ids(records(a)); len(got) != n || got[0] != first {
		t.Fatalf("first claim took %v, want the %d rows from %d", got, n, first)
	}
	b := claimHeld(t, s, "a", 1) // one row a page, if the store pages
	if b != nil {
		t.Cleanup(func() { _ = b.Rollback() })
	}
	if got := ids(records(b)); !equal(got, []int64{last}) {
		t.Fatalf("claim behind %d held rows took %v, want [%d]", n, got, last)
	}
	if err := a.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	c := claimHeld(t, s, "a", 2*n)
	if c != nil {
		t.Cleanup(func() { _ = c.Rollback() })
	}
	if got := ids(records(c)); len(got) != n || got[0] != first {
		t.Fatalf("after the first claim's rollback a claim took %v, want its %d rows from %d", got, n, first)
	}
	for _, held := range []outbox.Held{b, c} {
		if err := held.Commit(ctx, ids(held.Records())); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	if left := length(t, s); left != 0 {
		t.Fatalf("%d rows left after both commits, want 0", left)
	}
}

func testHeldRollback(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	held := claimHeld(t, s, "a", 10)
	if len(records(held)) != 2 {
		t.Fatalf("held claim took %v, want 2 rows", ids(records(held)))
	}
	if err := held.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	got := claim(t, s, "b", 10, time.Hour)
	if !equal(ids(got), []int64{a, b}) || got[0].Attempts != 0 || got[1].Attempts != 0 {
		t.Fatalf("after the rollback claimed %v, want %d and %d at once, with no attempt", got, a, b)
	}
}

func testHeldFail(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	held := claimHeld(t, s, "a", 10)
	if err := held.Fail(ctx, []int64{a}, "broker said no"); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	if err := held.Commit(ctx, []int64{b}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if n := length(t, s); n != 1 {
		t.Fatalf("rows after the commit = %d, want 1", n)
	}
	if got := claim(t, s, "a", 10, time.Hour); len(got) != 0 {
		t.Fatal("failed row claimable before its backoff")
	}
	got := claimWhenDue(t, s, "a", 10)
	if len(got) != 1 || got[0].ID != a || got[0].Attempts != 1 {
		t.Fatalf("claimed %v, want row %d with 1 attempt", got, a)
	}
}

// testHeldInserts: a held claim must not keep the business transactions'
// inserts (and the fast path's deletes of other rows) from committing, or
// every commit would wait for the relay's publishes. It would deadlock the
// test, which the deadline turns into a failure. (The held claim's own
// rows are not read by the inserts; the rows around them are written.)
func testHeldInserts(t *testing.T, h Harness) {
	s, db := newHolder(t, h)
	other, _ := insert(t, s, nil, time.Hour) // not claimed: the fast path deletes it
	insert(t, s, nil, 0)
	insert(t, s, nil, 0)
	held := claimHeld(t, s, "a", 10)
	defer held.Rollback()
	if len(records(held)) != 2 {
		t.Fatalf("held claim took %v, want 2 rows", ids(records(held)))
	}
	done := make(chan error, 1)
	go func() {
		dl, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for i := 0; i < 3; i++ {
			tx, err := h.beginE(db)
			if err != nil {
				done <- err
				return
			}
			if _, err := s.Insert(dl, tx, outbox.Row{Body: []byte("beside")}); err != nil {
				tx.Rollback(ctx)
				done <- err
				return
			}
			if err := tx.Commit(dl); err != nil {
				done <- err
				return
			}
		}
		done <- s.Delete(dl, []int64{other})
	}()
	if err := <-done; err != nil {
		t.Fatalf("an insert or a delete beside the held claim failed (it waited for the claim's locks?): %v", err)
	}
	if err := held.Commit(ctx, ids(records(held))); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if n := length(t, s); n != 3 {
		t.Fatalf("rows = %d, want the 3 inserted beside the claim", n)
	}
}

func testHeldKeyOrder(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	k1, _ := insertKeyed(t, s, nil, "k", 0)
	k2, _ := insertKeyed(t, s, nil, "k", 0)
	free, _ := insert(t, s, nil, 0)
	first := claimHeld(t, s, "a", 1)
	if got := ids(records(first)); !equal(got, []int64{k1}) {
		t.Fatalf("first held claim took %v, want [%d]", got, k1)
	}
	// k2 waits for k1, held by a claim of the same owner: it is not sent
	// until k1 is confirmed or given back.
	second := claimHeld(t, s, "a", 10)
	if got := ids(records(second)); !equal(got, []int64{free}) {
		if second != nil {
			second.Rollback()
		}
		first.Rollback()
		t.Fatalf("second held claim took %v, want only the unkeyed row %d", got, free)
	}
	if err := second.Commit(ctx, []int64{free}); err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(ctx, []int64{k1}); err != nil {
		t.Fatal(err)
	}
	third := claimHeld(t, s, "a", 10)
	if got := ids(records(third)); !equal(got, []int64{k2}) {
		t.Fatalf("after k1 was deleted the held claim took %v, want [%d]", got, k2)
	}
	if err := third.Rollback(); err != nil {
		t.Fatal(err)
	}
}

func testHeldConcurrent(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	const rows = 1200
	for i := 0; i < rows; i++ {
		insert(t, s, nil, 0)
	}
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		dups int
		wg   sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				held, err := s.ClaimHeld(ctx, "a", 50, 0, time.Minute)
				if err != nil {
					t.Errorf("ClaimHeld: %v", err)
					return
				}
				if held == nil {
					return
				}
				got := ids(held.Records())
				mu.Lock()
				for _, id := range got {
					if seen[id] {
						dups++
					}
					seen[id] = true
				}
				mu.Unlock()
				if err := held.Commit(ctx, got); err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if dups != 0 || len(seen) != rows {
		t.Fatalf("claimed %d distinct rows with %d double claims, want %d and 0", len(seen), dups, rows)
	}
	if n := length(t, s); n != 0 {
		t.Fatalf("rows left = %d, want 0", n)
	}
}

// testHeldOutlivesContext: the context of ClaimHeld bounds its statements,
// not the claim. A relay that stops cancels the context it claimed with,
// and must still delete the rows the broker confirmed meanwhile.
func testHeldOutlivesContext(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	claimCtx, cancel := context.WithCancel(ctx)
	held := mustClaimHeld(t, s, claimCtx, time.Minute)
	cancel()
	if got := claim(t, s, "b", 10, time.Hour); len(got) != 0 {
		held.Rollback()
		t.Fatalf("a leased claim took %v once the held claim's context ended, want none", ids(got))
	}
	if err := held.Commit(ctx, []int64{a}); err != nil {
		t.Fatalf("Commit after the claim's context ended: %v", err)
	}
	if got := claim(t, s, "b", 10, time.Hour); !equal(ids(got), []int64{b}) {
		t.Fatalf("after the commit claimed %v, want [%d]", ids(got), b)
	}
}

// testHeldIdle: a claim whose holder stops talking (hung, or its host gone
// without closing the connection) ends after its idle bound, as a lease
// would, and its rows are available again; its late Commit fails and
// deletes nothing.
func testHeldIdle(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, _ := insert(t, s, nil, 0)
	held := mustClaimHeld(t, s, ctx, 200*time.Millisecond)
	defer held.Rollback() // on a failure; a no-op once it ended
	got := claimWhenDue(t, s, "b", 10)
	if !equal(ids(got), []int64{a}) {
		t.Fatalf("after the held claim's idle bound claimed %v, want [%d]", ids(got), a)
	}
	if err := held.Commit(ctx, []int64{a}); err == nil {
		t.Fatal("Commit of a claim the database ended succeeded")
	}
	if n := length(t, s); n != 1 {
		t.Fatalf("rows = %d, want 1: the ended claim deleted nothing", n)
	}
}

// testHeldNotWaitedFor: Delete, Fail and Release of rows a held claim
// holds skip them instead of waiting for the claim. The acker deletes the
// rows the fast path got confirmed, one of which a relay may hold; if the
// acker waited, the relay's claim could wait in turn for a verdict queued
// behind the acker, and neither would end.
func testHeldNotWaitedFor(t *testing.T, h Harness) {
	s, _ := newHolder(t, h)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	held := claimHeld(t, s, "a", 10)
	defer held.Rollback()
	free, _ := insert(t, s, nil, 0)
	dl, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Delete(dl, []int64{a, free}); err != nil {
		t.Fatalf("Delete beside the held claim: %v", err)
	}
	if err := s.Fail(dl, "", []int64{b}, "failed on the fast path"); err != nil {
		t.Fatalf("Fail beside the held claim: %v", err)
	}
	if err := s.Release(dl, "a", []int64{b}); err != nil {
		t.Fatalf("Release beside the held claim: %v", err)
	}
	if err := held.Rollback(); err != nil {
		t.Fatal(err)
	}
	got := claim(t, s, "b", 10, time.Hour)
	if !equal(ids(got), []int64{a, b}) || got[1].Attempts != 0 {
		t.Fatalf("after the held claim ended claimed %v, want the held rows %d and %d, untouched (the free row %d deleted)", got, a, b, free)
	}
}
