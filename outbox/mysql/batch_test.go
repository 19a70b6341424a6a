package mysql_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/outbox"
)

// A transaction that holds the pool's only connection can still write a
// batch of any size: the store never needs a second connection to prepare
// its statement (a pool full of such transactions would wait forever).
func TestInsertBatchNeedsNoSecondConnection(t *testing.T) {
	s, db := newStore(t)
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := outbox.SQLBeginner(db).Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	total := 0
	for _, n := range []int{1, 7, 16, 17, 40, 64, 100} {
		rows := make([]outbox.Row, n)
		for i := range rows {
			rows[i] = outbox.Row{Body: []byte("x")}
		}
		ids, err := s.InsertBatch(ctx, tx, rows)
		require.NoError(t, err, "a batch of %d rows in a transaction holding the only connection", n)
		require.Len(t, ids, n)
		total += n
	}
	require.NoError(t, tx.Commit(ctx))
	got, err := s.Len(ctx)
	require.NoError(t, err)
	require.Equal(t, total, got)
}
