// Package outboxtest is the conformance suite for outbox.Store
// implementations.
package outboxtest

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// Harness tells the suite how to make stores.
type Harness struct {
	// New returns a migrated, empty store on a fresh table and the
	// database it lives in.
	New func(t *testing.T) (outbox.Store, *sql.DB)
	// Begin, when set, begins the transactions the suite inserts in, on
	// the database New returned: a driver's native transaction (a pgx.Tx
	// adapted to outbox.Tx) rather than the default *sql.Tx.
	Begin func(ctx context.Context, db *sql.DB) (outbox.Tx, error)
}

// begin begins a transaction on db with h.Begin, or as a *sql.Tx.
func (h Harness) begin(t *testing.T, db *sql.DB) outbox.Tx {
	t.Helper()
	tx, err := h.beginE(db)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// beginE is begin for goroutines other than the test's.
func (h Harness) beginE(db *sql.DB) (outbox.Tx, error) {
	if h.Begin != nil {
		return h.Begin(ctx, db)
	}
	return outbox.SQLBeginner(db).Begin(ctx)
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("InsertFollowsTransaction", func(t *testing.T) { testInsertTx(t, h) })
	t.Run("InsertBatch", func(t *testing.T) { testInsertBatch(t, h) })
	t.Run("ClaimOnlyAvailable", func(t *testing.T) { testClaimAvailable(t, h) })
	t.Run("LeaseHidesRows", func(t *testing.T) { testLease(t, h) })
	t.Run("ConcurrentClaimsDisjoint", func(t *testing.T) { testConcurrentClaims(t, h) })
	t.Run("FailBacksOff", func(t *testing.T) { testFail(t, h) })
	t.Run("DeleteAndPurge", func(t *testing.T) { testDeleteAndPurge(t, h) })
	t.Run("DeleteTakesOnlyTheGivenIDs", func(t *testing.T) { testDeleteOnlyGiven(t, h) })
	t.Run("Remaining", func(t *testing.T) { testRemaining(t, h) })
	t.Run("ClaimKeepsKeyOrder", func(t *testing.T) { testClaimKeyOrder(t, h) })
	t.Run("ClaimLooksPastHeldKeys", func(t *testing.T) { testClaimPastHeldKeys(t, h) })
	t.Run("ClaimTakesARowOnce", func(t *testing.T) { testClaimRowOnce(t, h) })
	t.Run("ConcurrentClaimsKeepKeyOrder", func(t *testing.T) { testConcurrentKeyOrder(t, h) })
	t.Run("ReleaseCountsNoAttempt", func(t *testing.T) { testRelease(t, h) })
	t.Run("ClaimBoundedByBytes", func(t *testing.T) { testClaimBytes(t, h) })
	t.Run("ClaimBoundedByBytesKeepsKeyOrder", func(t *testing.T) { testClaimBytesKeyOrder(t, h) })
	t.Run("Declarations", func(t *testing.T) { testDeclarations(t, h) })
	t.Run("Redeliveries", func(t *testing.T) { testRedeliveries(t, h) })
	t.Run("ReadTx", func(t *testing.T) { testReadTx(t, h) })
	t.Run("Read", func(t *testing.T) { testRead(t, h) })
	t.Run("Pack", func(t *testing.T) { testPack(t, h) })
	t.Run("TransientErrors", func(t *testing.T) { testTransient(t, h) })
	runHeld(t, h)
}

var ctx = context.Background()

func insert(t *testing.T, s outbox.Store, tx outbox.Tx, availableIn time.Duration) (int64, *message.Message) {
	t.Helper()
	return insertKeyed(t, s, tx, "", availableIn)
}

// insertKeyed inserts a message of topic.a with key ("" for none).
func insertKeyed(t *testing.T, s outbox.Store, tx outbox.Tx, key string, availableIn time.Duration) (int64, *message.Message) {
	t.Helper()
	m := message.New("topic.a", []byte("p"), message.WithKey(key))
	m.Header.Set("h", "v")
	body, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Insert(ctx, tx, outbox.Row{Body: body, OrderKey: outbox.OrderKey(m.Topic, key), AvailableIn: availableIn})
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return id, m
}

func length(t *testing.T, s outbox.Store) int {
	t.Helper()
	n, err := s.Len(ctx)
	if err != nil {
		t.Fatalf("Len: %v", err)
	}
	return n
}

func claim(t *testing.T, s outbox.Store, owner string, limit int, lease time.Duration) []outbox.Record {
	t.Helper()
	recs, err := s.Claim(ctx, owner, limit, 0, lease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return recs
}

func testInsertTx(t *testing.T, h Harness) {
	s, db := h.New(t)
	tx := h.begin(t, db)
	insert(t, s, tx, 0)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := length(t, s); n != 0 {
		t.Fatalf("rows after rollback = %d, want 0", n)
	}
	tx = h.begin(t, db)
	insert(t, s, tx, 0)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	insert(t, s, nil, 0)
	if n := length(t, s); n != 2 {
		t.Fatalf("rows after commit and a lone insert = %d, want 2", n)
	}
}

func testClaimAvailable(t *testing.T, h Harness) {
	s, _ := h.New(t)
	insert(t, s, nil, time.Hour)
	id, m := insert(t, s, nil, 0)
	recs := claim(t, s, "a", 10, time.Minute)
	if len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("claimed %v, want only row %d", recs, id)
	}
	got := recs[0].Message
	if recs[0].Err != nil || got.UUID != m.UUID || got.Header.GetString("h") != "v" || string(got.Payload) != "p" {
		t.Fatalf("claimed message %+v (err %v), want %+v", got, recs[0].Err, m)
	}
	if want, _ := message.Marshal(m); string(recs[0].Body) != string(want) {
		t.Fatal("claimed body differs from the stored bytes")
	}
}

func testLease(t *testing.T, h Harness) {
	s, _ := h.New(t)
	insert(t, s, nil, 0)
	if recs := claim(t, s, "a", 10, time.Hour); len(recs) != 1 {
		t.Fatalf("first claim got %d rows, want 1", len(recs))
	}
	if recs := claim(t, s, "b", 10, time.Hour); len(recs) != 0 {
		t.Fatalf("second owner claimed %d leased rows", len(recs))
	}
	insert(t, s, nil, 0)
	// A lease of zero ends at once: the row is available again.
	if recs := claim(t, s, "c", 10, 0); len(recs) != 1 {
		t.Fatalf("claim got %d rows, want 1", len(recs))
	}
	if recs := claim(t, s, "d", 10, time.Hour); len(recs) != 1 {
		t.Fatalf("row with an expired lease not claimable: got %d", len(recs))
	}
}

func testConcurrentClaims(t *testing.T, h Harness) {
	s, db := h.New(t)
	const rows = 1200
	tx := h.begin(t, db)
	for i := 0; i < rows; i++ {
		insert(t, s, tx, 0)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[int64]string{}
		dups int
		wg   sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		owner := string(rune('a' + w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				recs, err := s.Claim(ctx, owner, 50, 0, time.Hour)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(recs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range recs {
					if _, ok := seen[r.ID]; ok {
						dups++
					}
					seen[r.ID] = owner
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if dups != 0 || len(seen) != rows {
		t.Fatalf("claimed %d distinct rows with %d double claims, want %d and 0", len(seen), dups, rows)
	}
}

func testFail(t *testing.T, h Harness) {
	s, db := h.New(t)
	id, _ := insert(t, s, nil, 0)
	claim(t, s, "a", 10, 0)
	// Another owner's failure report does not touch a row leased to a.
	if err := s.Fail(ctx, "b", []int64{id}, "nope"); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(ctx, "a", []int64{id}, "broker said no"); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(ctx, "", []int64{id}, "second failure"); err != nil {
		t.Fatal(err)
	}
	if recs := claim(t, s, "a", 10, time.Minute); len(recs) != 0 {
		t.Fatal("failed row claimable before its backoff")
	}
	_ = db
	recs := claimWhenDue(t, s, "a", 10)
	if len(recs) != 1 || recs[0].Attempts != 2 {
		t.Fatalf("claimed %d rows, attempts %d; want 1 row with 2 attempts", len(recs), recs[0].Attempts)
	}
}

// claimWhenDue polls Claim until it returns rows: for rows waiting out a
// due time or a backoff.
func claimWhenDue(t *testing.T, s outbox.Store, owner string, limit int) []outbox.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if recs := claim(t, s, owner, limit, time.Hour); len(recs) > 0 {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatal("no row became available within 30s")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

func testDeleteAndPurge(t *testing.T, h Harness) {
	s, _ := h.New(t)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	insert(t, s, nil, 0)
	if err := s.Delete(ctx, []int64{a, b}); err != nil {
		t.Fatal(err)
	}
	if n := length(t, s); n != 1 {
		t.Fatalf("rows after delete = %d, want 1", n)
	}
	if n, err := s.Purge(ctx); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if n := length(t, s); n != 0 {
		t.Fatalf("rows after purge = %d", n)
	}
}

// Delete removes exactly the rows given, whether their ids are
// consecutive or not, and in any order: the rows between them, and ids
// with no row, are left alone.
func testDeleteOnlyGiven(t *testing.T, h Harness) {
	s, _ := h.New(t)
	var ids []int64
	for range 8 {
		id, _ := insert(t, s, nil, 0)
		ids = append(ids, id)
	}
	// Two runs (ids 0-2 and 6-7), a single one (4), given out of order,
	// with a duplicate and an id that has no row; 3 and 5 stay.
	del := []int64{ids[7], ids[1], ids[4], ids[0], ids[6], ids[2], ids[1], ids[7] + 1000}
	if err := s.Delete(ctx, del); err != nil {
		t.Fatal(err)
	}
	left, err := s.Remaining(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	if want := []int64{ids[3], ids[5]}; !slices.Equal(left, want) {
		t.Fatalf("rows left after Delete = %v, want %v", left, want)
	}
}

func testRemaining(t *testing.T, h Harness) {
	s, _ := h.New(t)
	a, _ := insert(t, s, nil, 0)
	b, _ := insert(t, s, nil, 0)
	if err := s.Delete(ctx, []int64{a}); err != nil {
		t.Fatal(err)
	}
	left, err := s.Remaining(ctx, []int64{a, b, b + 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != b {
		t.Fatalf("Remaining = %v, want [%d]", left, b)
	}
	if left, err := s.Remaining(ctx, nil); err != nil || len(left) != 0 {
		t.Fatalf("Remaining(nil) = %v, %v", left, err)
	}
}

func ids(recs []outbox.Record) []int64 { return RecordIDs(recs) }

// testClaimKeyOrder: a keyed row is not claimed while an earlier row of its
// key is leased, backing off or not yet available; other keys and unkeyed
// rows are not held back.
func testClaimKeyOrder(t *testing.T, h Harness) {
	s, _ := h.New(t)
	k1, _ := insertKeyed(t, s, nil, "k", time.Hour) // not yet available: holds k back
	k2, _ := insertKeyed(t, s, nil, "k", 0)
	o1, _ := insertKeyed(t, s, nil, "other", 0)
	free, _ := insert(t, s, nil, 0)
	got := ids(claim(t, s, "a", 10, time.Hour))
	if want := []int64{o1, free}; !equal(got, want) {
		t.Fatalf("claimed %v, want %v: row %d of key k is behind row %d", got, want, k2, k1)
	}

	// Once the earlier row is gone, the later one is claimed.
	if err := s.Delete(ctx, []int64{k1}); err != nil {
		t.Fatal(err)
	}
	if got := ids(claim(t, s, "a", 10, time.Hour)); !equal(got, []int64{k2}) {
		t.Fatalf("claimed %v, want [%d]", got, k2)
	}

	// A failed row holds its key back while it backs off, and its
	// successors are claimed with it, in id order, when it is due.
	s2, _ := h.New(t)
	f1, _ := insertKeyed(t, s2, nil, "k", 0)
	if got := ids(claim(t, s2, "a", 10, 0)); !equal(got, []int64{f1}) {
		t.Fatalf("claimed %v, want [%d]", got, f1)
	}
	if err := s2.Fail(ctx, "a", []int64{f1}, "nacked"); err != nil {
		t.Fatal(err)
	}
	f2, _ := insertKeyed(t, s2, nil, "k", 0)
	f3, _ := insertKeyed(t, s2, nil, "k", 0)
	// The backoff is short: on a slow machine f1 may be due already, and
	// then it must come first. What may never happen is f2 or f3 without
	// f1. A claim that finds f1 becoming due between its scan and its walk
	// of the key may take fewer rows than the key has (the contract allows
	// it): the rest of the run follows in the owner's next claim.
	wantRun := []int64{f1, f2, f3}
	got = ids(claim(t, s2, "a", 10, time.Hour))
	if len(got) == 0 {
		got = ids(claimWhenDue(t, s2, "a", 10))
	}
	if len(got) == 0 || len(got) > len(wantRun) || !equal(got, wantRun[:len(got)]) {
		t.Fatalf("claimed %v, want nothing while row %d of their key backs off, then a run from %v", got, f1, wantRun)
	}
	if rest := wantRun[len(got):]; len(rest) > 0 {
		if got := ids(claim(t, s2, "a", 10, time.Hour)); !equal(got, rest) {
			t.Fatalf("the owner's next claim took %v, want the rest of the key's run %v", got, rest)
		}
	}

	// Rows of a key that become available in the reverse of their id
	// order: until the earlier one is due nothing is claimed; then the
	// scan meets the later one first, and with room for one row the claim
	// takes the earlier one instead of none.
	s4, _ := h.New(t)
	r1, _ := insertKeyed(t, s4, nil, "k", 200*time.Millisecond)
	r2, _ := insertKeyed(t, s4, nil, "k", 0)
	for _, want := range []int64{r1, r2} {
		got := ids(claimWhenDue(t, s4, "a", 1))
		if !equal(got, []int64{want}) {
			t.Fatalf("claimed %v, want [%d]", got, want)
		}
		if err := s4.Delete(ctx, got); err != nil {
			t.Fatal(err)
		}
	}

	// An owner's next claim continues a key behind the rows it leased
	// already (it sends them in order); another owner's does not.
	s5, _ := h.New(t)
	var rows5 []int64
	for i := 0; i < 4; i++ {
		id, _ := insertKeyed(t, s5, nil, "k", 0)
		rows5 = append(rows5, id)
	}
	if got := ids(claim(t, s5, "a", 2, time.Hour)); !equal(got, rows5[:2]) {
		t.Fatalf("claimed %v, want %v", got, rows5[:2])
	}
	if got := ids(claim(t, s5, "b", 2, time.Hour)); len(got) != 0 {
		t.Fatalf("owner b claimed %v behind rows leased to a", got)
	}
	if got := ids(claim(t, s5, "a", 2, time.Hour)); !equal(got, rows5[2:]) {
		t.Fatalf("owner a claimed %v, want %v after its own leased rows", got, rows5[2:])
	}

	// A key's rows beyond the batch are not claimed ahead of its earlier
	// ones: with limit 2, only a prefix of the key is taken.
	s3, _ := h.New(t)
	var want []int64
	for i := 0; i < 5; i++ {
		id, _ := insertKeyed(t, s3, nil, "k", 0)
		want = append(want, id)
	}
	for len(want) > 0 {
		got := ids(claim(t, s3, "a", 2, time.Hour))
		n := min(2, len(want))
		if !equal(got, want[:n]) {
			t.Fatalf("claimed %v, want %v", got, want[:n])
		}
		if err := s3.Delete(ctx, got); err != nil {
			t.Fatal(err)
		}
		want = want[n:]
	}
}

// testClaimPastHeldKeys: rows held back fill the head of the scan; a claim
// still finds the rows behind them.
func testClaimPastHeldKeys(t *testing.T, h Harness) {
	s, db := h.New(t)
	insertKeyed(t, s, nil, "stuck", time.Hour)
	tx := h.begin(t, db)
	for i := 0; i < 30; i++ {
		insertKeyed(t, s, tx, "stuck", 0)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	free, _ := insert(t, s, nil, 0)
	if got := ids(claim(t, s, "a", 10, time.Hour)); !equal(got, []int64{free}) {
		t.Fatalf("claimed %v, want [%d] from behind 30 held-back rows", got, free)
	}
}

// testClaimRowOnce: a claim that looks past a held-back key takes the rows
// of its first pass once, even when their lease has passed by its next
// pass (a lease of 0 here).
func testClaimRowOnce(t *testing.T, h Harness) {
	s, _ := h.New(t)
	insertKeyed(t, s, nil, "stuck", time.Hour)
	insertKeyed(t, s, nil, "stuck", 0)
	free, _ := insert(t, s, nil, 0)
	if got := ids(claim(t, s, "a", 10, 0)); !equal(got, []int64{free}) {
		t.Fatalf("claimed %v, want [%d] once", got, free)
	}
}

// testConcurrentKeyOrder: claimers racing over many keys never hold a row
// while an earlier row of its key is unclaimed or held by another, and
// every row is claimed once.
func testConcurrentKeyOrder(t *testing.T, h Harness) {
	s, db := h.New(t)
	const keys, perKey = 20, 30
	tx := h.begin(t, db)
	keyOf := map[int64]int{}
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			id, _ := insertKeyed(t, s, tx, string(rune('a'+k)), 0)
			keyOf[id] = k
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		done      = map[int64]bool{}
		violation string
		wg        sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		owner := string(rune('A' + w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			idle := 0
			for idle < 50 {
				recs, err := s.Claim(ctx, owner, 15, 0, time.Hour)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(recs) == 0 {
					mu.Lock()
					finished := len(done) == len(keyOf)
					mu.Unlock()
					if finished {
						return
					}
					idle++
					time.Sleep(5 * time.Millisecond) // polling interval
					continue
				}
				idle = 0
				// "Send" in id order, checking that each row follows the
				// last finished row of its key and that none is missing.
				mu.Lock()
				for _, r := range recs {
					k := keyOf[r.ID]
					if done[r.ID] && violation == "" {
						violation = "row claimed twice"
					}
					for id, kk := range keyOf {
						if kk == k && id < r.ID && !done[id] && violation == "" {
							violation = "row claimed before an earlier row of its key finished"
						}
					}
					done[r.ID] = true
				}
				mu.Unlock()
				if err := s.Delete(ctx, ids(recs)); err != nil {
					t.Errorf("Delete: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if violation != "" {
		t.Fatal(violation)
	}
	if len(done) != len(keyOf) {
		t.Fatalf("claimed %d of %d rows", len(done), len(keyOf))
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testRelease: a released row is available again at once, with its
// attempts unchanged; only its owner releases it, and "" releases nothing.
func testRelease(t *testing.T, h Harness) {
	s, _ := h.New(t)
	id, _ := insert(t, s, nil, 0)
	if got := ids(claim(t, s, "a", 10, time.Hour)); !equal(got, []int64{id}) {
		t.Fatalf("claimed %v, want [%d]", got, id)
	}
	for _, owner := range []string{"b", ""} {
		if err := s.Release(ctx, owner, []int64{id}); err != nil {
			t.Fatalf("Release(%q): %v", owner, err)
		}
		if got := ids(claim(t, s, "c", 10, time.Hour)); len(got) != 0 {
			t.Fatalf("Release(%q) of a row leased to a made it claimable: claimed %v", owner, got)
		}
	}
	if err := s.Release(ctx, "a", []int64{id}); err != nil {
		t.Fatal(err)
	}
	recs := claim(t, s, "c", 10, time.Hour)
	if len(recs) != 1 || recs[0].ID != id || recs[0].Attempts != 0 {
		t.Fatalf("after Release claimed %v; want row %d at once with 0 attempts", recs, id)
	}

	// A failure counted before is kept; the release adds none.
	if err := s.Fail(ctx, "c", []int64{id}, "nacked"); err != nil {
		t.Fatal(err)
	}
	recs = claimWhenDue(t, s, "c", 10)
	if err := s.Release(ctx, "c", ids(recs)); err != nil {
		t.Fatal(err)
	}
	recs = claim(t, s, "d", 10, time.Hour)
	if len(recs) != 1 || recs[0].Attempts != 1 {
		t.Fatalf("after Fail and Release claimed %v; want the row with 1 attempt", recs)
	}

	// Releasing a row nobody claimed does not advance it.
	later, _ := insert(t, s, nil, time.Hour)
	if err := s.Release(ctx, "", []int64{later}); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "d", []int64{later}); err != nil {
		t.Fatal(err)
	}
	if got := ids(claim(t, s, "e", 10, time.Hour)); len(got) != 0 {
		t.Fatalf("claimed %v: Release made a row due that nobody had claimed", got)
	}
}

// insertSized inserts an available message of topic.a with key ("" for
// none) and a payload of n bytes, and returns its id and stored size.
func insertSized(t *testing.T, s outbox.Store, key string, n int) (int64, int) {
	t.Helper()
	m := message.New("topic.a", make([]byte, n), message.WithKey(key))
	body, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Insert(ctx, nil, outbox.Row{Body: body, OrderKey: outbox.OrderKey(m.Topic, key)})
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return id, len(body)
}

func claimBytes(t *testing.T, s outbox.Store, owner string, limit, maxBytes int) []outbox.Record {
	t.Helper()
	recs, err := s.Claim(ctx, owner, limit, maxBytes, time.Hour)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return recs
}

// testClaimBytes: a claim stops adding rows once their bodies reach
// maxBytes, takes one row whatever its size, and leaves the rest available.
func testClaimBytes(t *testing.T, h Harness) {
	s, _ := h.New(t)
	var (
		rows  []int64
		sizes []int
	)
	for i := 0; i < 6; i++ {
		id, n := insertSized(t, s, "", 1000)
		rows, sizes = append(rows, id), append(sizes, n)
	}
	// The first two leave room under the bound, the third reaches it.
	recs := claimBytes(t, s, "a", 10, sizes[0]+sizes[1]+1)
	if got := ids(recs); !equal(got, rows[:3]) {
		t.Fatalf("claimed %v under %d bytes, want %v", got, sizes[0]+sizes[1]+1, rows[:3])
	}
	for i, r := range recs {
		if len(r.Body) != sizes[i] {
			t.Fatalf("row %d: body of %d bytes, stored %d", r.ID, len(r.Body), sizes[i])
		}
	}
	if got := ids(claimBytes(t, s, "a", 10, 1)); !equal(got, rows[3:4]) {
		t.Fatalf("claimed %v under 1 byte, want the one row %v", got, rows[3:4])
	}
	if got := ids(claimBytes(t, s, "a", 10, 0)); !equal(got, rows[4:]) {
		t.Fatalf("claimed %v without a byte bound, want %v", got, rows[4:])
	}
}

// testClaimBytesKeyOrder: a claim cut short by maxBytes takes a key's
// earliest rows only, and the rest of the key waits for the owner of those.
func testClaimBytesKeyOrder(t *testing.T, h Harness) {
	s, _ := h.New(t)
	k1, n1 := insertSized(t, s, "k", 1000)
	free, n2 := insertSized(t, s, "", 1000)
	k2, _ := insertSized(t, s, "k", 1000)
	k3, _ := insertSized(t, s, "k", 1000)
	if got, want := ids(claimBytes(t, s, "a", 10, n1+n2+1)), []int64{k1, free, k2}; !equal(got, want) {
		t.Fatalf("claimed %v, want %v", got, want)
	}
	if got := ids(claimBytes(t, s, "b", 10, 0)); len(got) != 0 {
		t.Fatalf("another owner claimed %v, behind rows %d and %d of its key leased to a", got, k1, k2)
	}
	if got := ids(claimBytes(t, s, "a", 10, 0)); !equal(got, []int64{k3}) {
		t.Fatalf("claimed %v, want the rest of the key [%d]", got, k3)
	}
}
