package mysql

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
)

// A held claim sets its session's wait_timeout to its idle bound and puts
// the session's own value back when it ends: the connection returns to
// the application's pool, whose transactions must not be cut after a few
// idle seconds.
func TestHeldClaimPutsWaitTimeoutBack(t *testing.T) {
	s, db := newInternalStore(t)
	ctx := context.Background()
	db.SetMaxOpenConns(1) // the claim's connection is the one read below
	if _, err := db.ExecContext(ctx, `SET SESSION wait_timeout = 777`); err != nil {
		t.Fatal(err)
	}
	for _, end := range []string{"commit", "rollback"} {
		id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("m")})
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.ClaimHeld(ctx, "a", 10, 0, 3*time.Second)
		if err != nil || h == nil {
			t.Fatalf("ClaimHeld = %v, %v", h, err)
		}
		var during int
		if err := h.(*held).tx.QueryRowContext(ctx, `SELECT @@SESSION.wait_timeout`).Scan(&during); err != nil {
			t.Fatal(err)
		}
		if end == "commit" {
			err = h.Commit(ctx, []int64{id})
		} else {
			err = h.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		var after int
		if err := db.QueryRowContext(ctx, `SELECT @@SESSION.wait_timeout`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if during != 3 || after != 777 {
			t.Fatalf("%s: wait_timeout %d during the claim and %d after it, want 3 and the session's 777", end, during, after)
		}
	}
}

// newInternalStore returns a migrated store on a fresh table and its
// database.
func newInternalStore(t *testing.T) (*Store, *sql.DB) {
	t.Helper()
	db := testenv.DB(t)
	s, err := New(db, "final_"+testenv.Service(t, db)+"_outbox", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, db
}
