package mysql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"strings"
	"sync"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
)

// lockRecorder is a database/sql connector that notes the name of every
// GET_LOCK the code under test takes. Its parameters are interpolated on
// the client, so every statement reaches the connection with its
// arguments.
type lockRecorder struct {
	driver.Connector
	mu    sync.Mutex
	names []string
}

// queryConn is what go-sql-driver's connection implements.
type queryConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.NamedValueChecker
	driver.SessionResetter
	driver.Validator
}

type recordingConn struct {
	queryConn
	rec *lockRecorder
}

func (r *lockRecorder) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := r.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &recordingConn{queryConn: c.(queryConn), rec: r}, nil
}

func (c *recordingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if strings.Contains(query, "GET_LOCK(") {
		c.rec.mu.Lock()
		c.rec.names = append(c.rec.names, args[0].Value.(string))
		c.rec.mu.Unlock()
	}
	return c.queryConn.QueryContext(ctx, query, args)
}

func (r *lockRecorder) locks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

func recordingDB(t *testing.T) (*sql.DB, *lockRecorder) {
	testenv.DB(t) // skips or fails when MariaDB is not there
	cfg, err := gomysql.ParseDSN(testenv.MySQLDSN())
	require.NoError(t, err)
	cfg.InterpolateParams = true
	c, err := gomysql.NewConnector(cfg)
	require.NoError(t, err)
	rec := &lockRecorder{Connector: c}
	db := sql.OpenDB(rec)
	t.Cleanup(func() { db.Close() })
	return db, rec
}

// longestService is a service name the bus accepts (final.MaxServiceNameLen
// characters) that makes the longest names: 47 of its characters are '.'
// or '-', which MySQL writes in file names as five each. They are drawn at
// random, so that the name is the test's own.
func longestService() string {
	var b [47]byte
	_, _ = rand.Read(b[:])
	name := []byte("t")
	for _, c := range b {
		name = append(name, ".-"[c&1])
	}
	return string(name)
}

func dropTables(t *testing.T, db *sql.DB, tables ...string) {
	t.Cleanup(func() {
		for _, table := range tables {
			_, _ = db.Exec("DROP TABLE IF EXISTS `" + table + "`")
			_, _ = db.Exec("DELETE FROM final_schema_migrations WHERE table_name = ?", table)
		}
	})
}

// MySQL 5.7 and later refuse GET_LOCK names over 64 characters and
// identifiers over 64; MariaDB, which runs here, takes the long lock
// names, so their lengths are asserted, not only used.
func TestNamesFitMySQLForTheLongestService(t *testing.T) {
	db, rec := recordingDB(t)
	ctx := context.Background()
	svc := longestService()
	outboxTable, inboxTable := "final_"+svc+"_outbox", "final_"+svc+"_inbox"
	// Two tables of the longest identifier that differ only at the end.
	long1, long2 := "final_"+strings.Repeat("x", 57)+"1", "final_"+strings.Repeat("x", 57)+"2"
	dropTables(t, db, outboxTable, inboxTable, long1, long2)

	for _, name := range []string{outboxTable, long1, long2} {
		s, err := mysql.New(db, name, mysql.Options{})
		require.NoError(t, err, name)
		require.NoError(t, s.Migrate(ctx), name)
		s.Close()
	}
	in, err := mysql.NewInbox(db, inboxTable)
	require.NoError(t, err)
	require.NoError(t, in.Migrate(ctx))

	locks := rec.locks()
	seen := map[string]bool{}
	for _, l := range locks {
		require.LessOrEqual(t, len(l), 64, "GET_LOCK name %q", l)
		require.False(t, seen[l], "lock name %q taken for two tables", l)
		seen[l] = true
	}
	require.Len(t, locks, 4, "one migration lock per table")

	rows, err := db.Query(`SELECT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?, ?, ?)`, outboxTable, inboxTable, long1, long2)
	require.NoError(t, err)
	defer rows.Close()
	tables := map[string]bool{}
	for rows.Next() {
		var table, index string
		require.NoError(t, rows.Scan(&table, &index))
		require.LessOrEqual(t, len(table), 64, "table %q", table)
		require.LessOrEqual(t, len(index), 64, "index %q of %q", index, table)
		tables[table] = true
	}
	require.NoError(t, rows.Err())
	require.Len(t, tables, 4)
}

// A name that is a valid identifier but too long as a file name is refused
// up front, not by the server's "File name too long" at Migrate.
func TestTableTooLongAsAFileNameRefused(t *testing.T) {
	db := testenv.DB(t)
	for _, name := range []string{strings.Repeat("-", 64), "final_" + strings.Repeat(".", 48) + "_outbox"} {
		_, err := mysql.New(db, name, mysql.Options{})
		require.ErrorIs(t, err, outbox.ErrInvalidIdentifier, "store %q", name)
		_, err = mysql.NewInbox(db, name)
		require.ErrorIs(t, err, outbox.ErrInvalidIdentifier, "inbox %q", name)
	}
}
