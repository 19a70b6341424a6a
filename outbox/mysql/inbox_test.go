package mysql_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/outboxtest"
)

func newInbox(t *testing.T) (*mysql.Inbox, *sql.DB) {
	db := testenv.DB(t)
	table := "final_" + testenv.Service(t, db) + "_inbox"
	dropTables(t, db, table)
	in, err := mysql.NewInbox(db, table)
	require.NoError(t, err)
	require.NoError(t, in.Migrate(context.Background()))
	return in, db
}

func TestInboxConformance(t *testing.T) {
	outboxtest.RunInbox(t, outboxtest.InboxHarness{New: func(t *testing.T) (outbox.Inbox, *sql.DB) { return newInbox(t) }})
}

func record(t *testing.T, in *mysql.Inbox, db *sql.DB, uuid, topic string) (bool, error) {
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

// The inbox table as the releases before its versioned migrations made it.
const inboxV1 = ` (
	uuid       VARCHAR(64) NOT NULL PRIMARY KEY,
	topic      VARCHAR(255) NOT NULL,
	handled_at DATETIME(6) NOT NULL,
	KEY idx_final_handled (handled_at)
) ENGINE=InnoDB`

// A table of the previous shape, with records in it, is upgraded on
// Migrate: its records still count, and a UUID is then recorded per topic.
func TestInboxOldTableMigratedInPlace(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	table := "final_" + testenv.Service(t, db) + "_inbox"
	dropTables(t, db, table)
	_, err := db.Exec("CREATE TABLE `" + table + "`" + inboxV1)
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO `"+table+"` (uuid, topic, handled_at) VALUES ('u1', 'orders.created', NOW(6) - INTERVAL 2 HOUR), ('u2', 'orders.paid', NOW(6)), (?, 'orders.paid', NOW(6))",
		strings.Repeat("é", 64)) // 64 characters, 128 bytes: the old column held it
	require.NoError(t, err)

	// A fleet starting at once: the migrations are serialised and done once.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			in, err := mysql.NewInbox(db, table)
			if err == nil {
				err = in.Migrate(ctx)
			}
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}

	in, err := mysql.NewInbox(db, table)
	require.NoError(t, err)
	require.NoError(t, in.Migrate(ctx), "Migrate again is a no-op")
	var rows int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM `"+table+"`").Scan(&rows))
	require.Equal(t, 3, rows, "the old records are kept")

	for _, c := range []struct {
		uuid, topic string
		dup         bool
	}{
		{"u1", "orders.created", true}, // recorded before the migration
		{"u2", "orders.paid", true},
		{strings.Repeat("é", 64), "orders.paid", true},
		{"u1", "orders.paid", false}, // the same UUID on another topic
		{"u2", "orders.created", false},
	} {
		dup, err := record(t, in, db, c.uuid, c.topic)
		require.NoError(t, err)
		require.Equal(t, c.dup, dup, "(%s, %s)", c.topic, c.uuid)
	}

	n, err := in.Prune(ctx, time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the old record's handled_at carried over")

	var v sql.NullInt64
	require.NoError(t, db.QueryRow("SELECT MAX(version) FROM final_schema_migrations WHERE table_name = ?", table).Scan(&v))
	require.Equal(t, int64(mysql.InboxSchemaVersion()), v.Int64, "recorded version")
}

// A key longer than the columns is refused, not cut to fit: cut, two
// UUIDs alike up to the cut would be one record.
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
