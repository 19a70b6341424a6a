package finaltest_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite" // the SQLite driver of the examples and tests

	"github.com/finalbus/final/finaltest"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox/sqlite"
)

// TestMain checks that the buses NewBus starts leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// database is one of the databases the helpers must work on.
type database struct {
	name string
	// open opens the database and returns a fresh service name whose
	// tables are dropped when t ends.
	open  func(t *testing.T) (*sql.DB, string)
	ph    string // the first placeholder
	quote func(name string) string
}

var databases = []database{
	{"mariadb", func(t *testing.T) (*sql.DB, string) {
		db := testenv.DB(t)
		return db, testenv.Service(t, db)
	}, "?", func(n string) string { return "`" + n + "`" }},
	{"postgres", func(t *testing.T) (*sql.DB, string) {
		db := testenv.Postgres(t)
		return db, testenv.PostgresService(t, db)
	}, "$1", func(n string) string { return `"` + n + `"` }},
	sqliteFile,
}

// sqliteFile is a new SQLite file per test, through modernc.org/sqlite.
var sqliteFile = database{"sqlite", func(t *testing.T) (*sql.DB, string) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "app.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, "orders"
}, "?", func(n string) string { return `"` + n + `"` }}

func forEachDatabase(t *testing.T, test func(t *testing.T, d database)) {
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) { test(t, d) })
	}
}

// recorder stands in for the test in tests of the helpers: it records
// what they report, and its Fatalf ends the goroutine, as testing's does.
type recorder struct {
	*testing.T // Helper, Cleanup and Context
	mu         sync.Mutex
	fatal      []string
	errs       []string
}

var _ finaltest.TB = (*recorder)(nil)

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	runtime.Goexit()
}

// failure runs f with a recorder on its own goroutine, as testing runs a
// test, and returns the message f failed with, or "" if it passed.
func failure(t *testing.T, f func(tb finaltest.TB)) string {
	t.Helper()
	r := &recorder{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		t.Fatalf("Errorf called: %s", strings.Join(r.errs, "; "))
	}
	switch len(r.fatal) {
	case 0:
		return ""
	case 1:
		return r.fatal[0]
	}
	t.Fatalf("Fatalf called %d times: %s", len(r.fatal), strings.Join(r.fatal, "; "))
	return ""
}
