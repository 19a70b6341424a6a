package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/outbox"
)

// Prune deletes the records older than keep, past one statement's chunk,
// and keeps the others.
func TestInboxPrune(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		in, db := newInbox(t, d)
		ctx := context.Background()
		for _, uuid := range []string{"new1", "new2"} {
			tx, err := db.Begin()
			require.NoError(t, err)
			dup, err := in.Record(ctx, outbox.SQLTx(tx), uuid, "t")
			require.NoError(t, err)
			require.False(t, dup)
			require.NoError(t, tx.Commit())
		}
		const old = 5003
		twoHoursAgo := time.Now().Add(-2 * time.Hour).UnixMicro()
		_, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			INSERT INTO `+in.Table()+` (topic, uuid, handled_at) SELECT 't', 'old' || i, ? FROM n`, old, twoHoursAgo)
		require.NoError(t, err)

		n, err := in.Prune(ctx, time.Hour)
		require.NoError(t, err)
		require.EqualValues(t, old, n)
		var left int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM `+in.Table()).Scan(&left))
		require.Equal(t, 2, left)
	})
}
