package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

// TestStatementsByIDsLockOnlyTheirRows runs each statement that locks or
// writes rows by their ids in a transaction left open, on a short table
// (where the optimizer would rather read the whole table than look rows
// up: without its index hint, the lock read all 4 rows into a join buffer
// and locked them), and checks from another session that every other row is still free.
// A row locked beside them would be passed over by a concurrent SKIP LOCKED
// (an acker's delete leaving a confirmed row to be sent again) or waited for
// (held claims deadlocking in their deletes).
func TestStatementsByIDsLockOnlyTheirRows(t *testing.T) {
	s, db := newInternalStore(t)
	ctx := context.Background()

	statements := []struct {
		name string
		run  func(tx *sql.Tx, ids []int64) error
	}{
		{"lock", func(tx *sql.Tx, ids []int64) error {
			got, err := s.lockAvailable(ctx, tx, ids)
			if err == nil && len(got) != len(ids) {
				t.Errorf("lock took %d rows, want %d", len(got), len(ids))
			}
			return err
		}},
		{"lease", func(tx *sql.Tx, ids []int64) error {
			cands := make([]claim.Candidate, len(ids))
			for i, id := range ids {
				cands[i].ID = id
			}
			return s.lease(ctx, tx, "a", cands, time.Minute)
		}},
		{"delete", func(tx *sql.Tx, ids []int64) error { return s.delete(ctx, tx, ids) }},
		{"fail", func(tx *sql.Tx, ids []int64) error { return s.fail(ctx, tx, ids, "refused") }},
	}
	for _, st := range statements {
		for _, c := range []struct {
			rows int
			run  bool // mine: the middle rows, consecutive, instead of every other row
		}{{4, false}, {12, false}, {12, true}} {
			rows := c.rows
			name := fmt.Sprintf("%s/rows=%d", st.name, rows)
			if c.run {
				name += "/consecutive"
			}
			t.Run(name, func(t *testing.T) {
				if _, err := s.Purge(ctx); err != nil {
					t.Fatal(err)
				}
				var all []int64
				for i := 0; i < rows; i++ {
					key := int64(0)
					if i%3 == 0 {
						key = 7
					}
					id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("m"), OrderKey: key})
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, id)
				}
				// Every other row, so that a range from the first to the last
				// would cover the others too; or the middle ones, so that a
				// range scan would read the row after them.
				var mine []int64
				for i, id := range all {
					if (!c.run && i%2 == 1) || (c.run && i >= rows/4 && i < rows-rows/4) {
						mine = append(mine, id)
					}
				}
				tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback() //nolint:errcheck // rolled back at the end either way
				if err := st.run(tx, mine); err != nil {
					t.Fatal(err)
				}
				var locked []int64
				for _, id := range all {
					var got int64
					err := db.QueryRowContext(ctx, `SELECT id FROM `+s.t.q+` WHERE id = ? FOR UPDATE NOWAIT`, id).Scan(&got)
					if err != nil && err != sql.ErrNoRows {
						locked = append(locked, id)
					}
				}
				if !slices.Equal(locked, mine) {
					t.Fatalf("rows locked by the %s of %v: %v, want only its own", st.name, mine, locked)
				}
			})
		}
	}
}

// TestDeleteOfConsecutiveRowsWaitsForNoOther deletes, by its range form,
// rows whose neighbours on both sides another transaction holds: it must
// neither wait for them nor delete them. A range scan without its LIMIT
// reads the row after the range and waits for its lock.
func TestDeleteOfConsecutiveRowsWaitsForNoOther(t *testing.T) {
	s, db := newInternalStore(t)
	ctx := context.Background()
	if _, err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	var all []int64
	for i := 0; i < 6; i++ {
		id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("m")})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, id)
	}
	if _, ok := claim.Consecutive(all); !ok {
		t.Fatalf("ids %v are not consecutive: the test needs a table no other test writes to", all)
	}
	other, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback() //nolint:errcheck // rolled back at the end either way
	// One row a statement: by a list, a short table is read whole and
	// every row of it locked (see byIDs).
	for _, id := range []int64{all[0], all[5]} {
		if _, err := other.ExecContext(ctx, `SELECT id FROM `+s.t.q+` WHERE id = ? FOR UPDATE`, id); err != nil {
			t.Fatal(err)
		}
	}

	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	// A wait fails the statement after a second instead of the default 50.
	if _, err := tx.ExecContext(ctx, `SET SESSION innodb_lock_wait_timeout = 1`); err != nil {
		t.Fatal(err)
	}
	mine := []int64{all[3], all[1], all[4], all[2]} // in any order
	if got, err := s.lockAvailable(ctx, tx, mine); err != nil || len(got) != len(mine) {
		t.Fatalf("lock: %d rows, %v", len(got), err)
	}
	if err := s.delete(ctx, tx, mine); err != nil {
		t.Fatalf("delete of %v beside held rows %d and %d: %v", mine, all[0], all[5], err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := other.Rollback(); err != nil {
		t.Fatal(err)
	}
	var left []int64
	rows, err := db.QueryContext(ctx, `SELECT id FROM `+s.t.q+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if left, err = scanIDs(rows); err != nil {
		t.Fatal(err)
	}
	if want := []int64{all[0], all[5]}; !slices.Equal(left, want) {
		t.Fatalf("rows left: %v, want %v", left, want)
	}
}
