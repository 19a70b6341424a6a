// Package outboxtest is the conformance suite for outbox.Store
// implementations.
package outboxtest

import (
	"context"
	"database/sql"
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
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("InsertFollowsTransaction", func(t *testing.T) { testInsertTx(t, h) })
	t.Run("ClaimOnlyAvailable", func(t *testing.T) { testClaimAvailable(t, h) })
	t.Run("LeaseHidesRows", func(t *testing.T) { testLease(t, h) })
	t.Run("ConcurrentClaimsDisjoint", func(t *testing.T) { testConcurrentClaims(t, h) })
	t.Run("FailBacksOff", func(t *testing.T) { testFail(t, h) })
	t.Run("DeleteAndPurge", func(t *testing.T) { testDeleteAndPurge(t, h) })
}

var ctx = context.Background()

func insert(t *testing.T, s outbox.Store, tx *sql.Tx, availableIn time.Duration) (int64, *message.Message) {
	t.Helper()
	m := message.New("topic.a", []byte("p"))
	m.Header.Set("h", "v")
	body, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Insert(ctx, tx, body, availableIn)
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
	recs, err := s.Claim(ctx, owner, limit, lease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return recs
}

func testInsertTx(t *testing.T, h Harness) {
	s, db := h.New(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	insert(t, s, tx, 0)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := length(t, s); n != 0 {
		t.Fatalf("rows after rollback = %d, want 0", n)
	}
	tx, _ = db.Begin()
	insert(t, s, tx, 0)
	if err := tx.Commit(); err != nil {
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
	tx, _ := db.Begin()
	for i := 0; i < rows; i++ {
		insert(t, s, tx, 0)
	}
	if err := tx.Commit(); err != nil {
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
				recs, err := s.Claim(ctx, owner, 50, time.Hour)
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs := claim(t, s, "a", 10, time.Minute)
		if len(recs) == 1 {
			if recs[0].Attempts != 2 {
				t.Fatalf("attempts = %d, want 2", recs[0].Attempts)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("failed row never became available again")
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
