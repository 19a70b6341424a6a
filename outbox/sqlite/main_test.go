package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite" // registers "sqlite"

	"github.com/finalbus/final/outbox/sqlite"
)

// TestMain runs the tests, or one of the child processes the crash tests
// start (see child in crash_test.go).
func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(child(mode))
	}
	goleak.VerifyTestMain(m)
}

// driverCase is a database/sql driver for SQLite, by its registered name.
type driverCase struct {
	name   string // for test names
	driver string // sql.Open's name
	pkg    string // the package of its driver type
}

var drivers = []driverCase{
	{"modernc", "sqlite", "modernc.org/sqlite"},
	{"ncruces", "sqlite3", "github.com/ncruces/go-sqlite3/driver"},
}

func forEachDriver(t *testing.T, f func(t *testing.T, d driverCase)) {
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) { f(t, d) })
	}
}

// dbFile returns the path of a new database file for t.
func dbFile(t testing.TB) string { return filepath.Join(t.TempDir(), "final.db") }

// open opens path with d and params; the handle is closed when t ends.
func open(t testing.TB, d driverCase, path, params string) *sql.DB {
	t.Helper()
	db, err := sql.Open(d.driver, "file:"+path+"?"+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

const table = "final_svc_outbox"

// newStore returns a migrated store on a new database file, opened with
// the package's DSNParams and nothing else.
func newStore(t testing.TB, d driverCase) (*sqlite.Store, *sql.DB) {
	t.Helper()
	db := open(t, d, dbFile(t), sqlite.DSNParams)
	return migrated(t, db), db
}

// migrated returns the migrated store in table of db.
func migrated(t testing.TB, db *sql.DB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(db, table, sqlite.Options{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}
