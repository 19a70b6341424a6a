package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/outbox/postgres"
)

func newInbox(t *testing.T) (*postgres.Inbox, *sql.DB) {
	return newInboxOn(t, testenv.Postgres(t))
}

func newInboxOn(t *testing.T, db *sql.DB) (*postgres.Inbox, *sql.DB) {
	in, err := postgres.NewInbox(db, tableName(t, db, "_inbox"))
	require.NoError(t, err)
	require.NoError(t, in.Migrate(context.Background()))
	return in, db
}

func TestInboxConformance(t *testing.T) {
	outboxtest.RunInbox(t, outboxtest.InboxHarness{New: func(t *testing.T) (outbox.Inbox, *sql.DB) { return newInbox(t) }})
}

func record(t *testing.T, in *postgres.Inbox, db *sql.DB, uuid, topic string) (bool, error) {
	tx, err := db.Begin()
	require.NoError(t, err)
	dup, err := in.Record(context.Background(), outbox.SQLTx(tx), uuid, topic)
	if err != nil {
		require.NoError(t, tx.Rollback())
		return dup, err
	}
	require.NoError(t, tx.Commit())
	return dup, nil
}

// In PostgreSQL a failed statement aborts its transaction: a duplicate
// must not be one, or the handler's transaction could not commit the
// writes it made before and after the check.
func TestInboxDuplicateLeavesTheTransactionUsable(t *testing.T) {
	in, db := newInbox(t)
	ctx := context.Background()
	business := tableName(t, db, "_business")
	_, err := db.Exec(`CREATE TABLE "` + business + `" (v TEXT NOT NULL)`)
	require.NoError(t, err)
	dup, err := record(t, in, db, "u1", "orders.created")
	require.NoError(t, err)
	require.False(t, dup)

	tx, err := db.Begin()
	require.NoError(t, err)
	defer tx.Rollback()
	_, err = tx.Exec(`INSERT INTO "`+business+`" (v) VALUES ($1)`, "before")
	require.NoError(t, err)
	dup, err = in.Record(ctx, outbox.SQLTx(tx), "u1", "orders.created")
	require.NoError(t, err)
	require.True(t, dup)
	_, err = tx.Exec(`INSERT INTO "`+business+`" (v) VALUES ($1)`, "after")
	require.NoError(t, err, "the transaction must still accept statements after a duplicate")
	require.NoError(t, tx.Commit())

	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM "`+business+`"`).Scan(&n))
	require.Equal(t, 2, n, "both writes of the transaction committed")
}

// Any bytes are a key, compared byte for byte: a UUID that is not valid
// UTF-8 is recorded, not refused (a refusal would abort the handler's
// transaction).
func TestInboxKeysAreBytes(t *testing.T) {
	in, db := newInbox(t)
	for _, uuid := range []string{"\xff\xfe", "a\x00b", `\x41`, "A"} {
		dup, err := record(t, in, db, uuid, "t")
		require.NoError(t, err, "%q", uuid)
		require.False(t, dup, "%q taken for a duplicate", uuid)
	}
	dup, err := record(t, in, db, "a\x00b", "t")
	require.NoError(t, err)
	require.True(t, dup)
}

// A key longer than the limits is refused before any statement runs.
func TestInboxRefusesKeysLongerThanItsColumns(t *testing.T) {
	in, db := newInbox(t)
	long := strings.Repeat("u", 256)
	dup, err := record(t, in, db, long+"1", "t")
	require.Error(t, err)
	require.False(t, dup)
	_, err = record(t, in, db, "u", strings.Repeat("t", 256))
	require.Error(t, err)

	dup, err = record(t, in, db, long, "t")
	require.NoError(t, err, "256 bytes fit")
	require.False(t, dup)
}

func TestInboxPrune(t *testing.T) {
	in, db := newInbox(t)
	ctx := context.Background()
	for _, id := range []string{"old1", "old2", "new"} {
		_, err := record(t, in, db, id, "t")
		require.NoError(t, err)
	}
	_, err := db.Exec(`UPDATE "` + in.Table() + `" SET handled_at = now() - interval '2 hours' WHERE uuid IN ('old1', 'old2')`)
	require.NoError(t, err)
	n, err := in.Prune(ctx, time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	dup, err := record(t, in, db, "new", "t")
	require.NoError(t, err)
	require.True(t, dup, "the recent record is kept")
}

func TestInboxMigrateConcurrentAndRecorded(t *testing.T) {
	db := testenv.Postgres(t)
	name := tableName(t, db, "_inbox")
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			in, err := postgres.NewInbox(db, name)
			if err == nil {
				err = in.Migrate(context.Background())
			}
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	var v int
	require.NoError(t, db.QueryRow(`SELECT MAX(version) FROM final_schema_migrations WHERE table_name = $1`, name).Scan(&v))
	require.Equal(t, postgres.InboxSchemaVersion(), v)
}

func TestInboxRefusesHostileTable(t *testing.T) {
	_, err := postgres.NewInbox(testenv.Postgres(t), `x"; DROP TABLE y`)
	require.ErrorIs(t, err, outbox.ErrInvalidIdentifier)
}
