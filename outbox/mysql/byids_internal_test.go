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
		for _, rows := range []int{4, 12} {
			t.Run(fmt.Sprintf("%s/rows=%d", st.name, rows), func(t *testing.T) {
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
				// would cover the others too.
				var mine, others []int64
				for i, id := range all {
					if i%2 == 1 {
						mine = append(mine, id)
					} else {
						others = append(others, id)
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
