package mysql_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
)

func newInbox(t *testing.T) (*mysql.Inbox, *testing.T) {
	db := testenv.DB(t)
	table := "final_" + testenv.Service(t, db) + "_inbox"
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS `" + table + "`") })
	in, err := mysql.NewInbox(db, table)
	require.NoError(t, err)
	require.NoError(t, in.Migrate(context.Background()))
	return in, t
}

func TestInboxRecordsOnceAndFollowsTheTransaction(t *testing.T) {
	in, _ := newInbox(t)
	db := testenv.DB(t)
	ctx := context.Background()

	tx, _ := db.Begin()
	dup, err := in.Record(ctx, tx, "u1", "t")
	require.NoError(t, err)
	require.False(t, dup)
	require.NoError(t, tx.Rollback())

	tx, _ = db.Begin()
	dup, err = in.Record(ctx, tx, "u1", "t")
	require.NoError(t, err)
	require.False(t, dup, "a rolled-back record does not count")
	require.NoError(t, tx.Commit())

	tx, _ = db.Begin()
	dup, err = in.Record(ctx, tx, "u1", "t")
	require.NoError(t, err)
	require.True(t, dup)
	require.NoError(t, tx.Rollback())
}

func TestInboxConcurrentDuplicateWaitsForTheFirst(t *testing.T) {
	in, _ := newInbox(t)
	db := testenv.DB(t)
	ctx := context.Background()
	first, _ := db.Begin()
	dup, err := in.Record(ctx, first, "same", "t")
	require.NoError(t, err)
	require.False(t, dup)

	result := make(chan bool, 1)
	go func() {
		second, _ := db.Begin()
		defer second.Rollback()
		dup, err := in.Record(ctx, second, "same", "t")
		if err != nil {
			t.Error(err)
		}
		result <- dup
	}()
	require.NoError(t, first.Commit())
	require.True(t, <-result, "the second delivery sees the first one's commit")
}

func TestInboxPrune(t *testing.T) {
	in, _ := newInbox(t)
	db := testenv.DB(t)
	ctx := context.Background()
	for _, id := range []string{"old1", "old2", "new"} {
		tx, _ := db.Begin()
		_, err := in.Record(ctx, tx, id, "t")
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
	}
	_, err := db.Exec("UPDATE `" + in.Table() + "` SET handled_at = NOW(6) - INTERVAL 2 HOUR WHERE uuid LIKE 'old%'")
	require.NoError(t, err)
	n, err := in.Prune(ctx, time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
}

func TestInboxRefusesHostileTable(t *testing.T) {
	_, err := mysql.NewInbox(testenv.DB(t), "x`; DROP TABLE y")
	require.ErrorIs(t, err, outbox.ErrInvalidIdentifier)
}
