package testenv

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver under test
)

// PostgresDSN is FINAL_TEST_POSTGRES_DSN or the local PostgreSQL's test
// database.
func PostgresDSN() string {
	if v := os.Getenv("FINAL_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Postgres opens the PostgreSQL test database through
// github.com/jackc/pgx/v5/stdlib; it is closed at the end of the test.
func Postgres(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		Unavailable(t, "PostgreSQL at %s: %v", PostgresDSN(), err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresService is Service on PostgreSQL: a fresh service name for t
// whose outbox and inbox tables, their rows in the shared tables and its
// queues are removed when the test ends.
func PostgresService(t testing.TB, db *sql.DB) string {
	t.Helper()
	name := Service(t, nil)
	t.Cleanup(func() { DropPostgresService(db, name) })
	return name
}

// DropPostgresService removes what a bus for svc left behind in
// PostgreSQL.
func DropPostgresService(db *sql.DB, svc string) {
	for _, table := range []string{"final_" + svc + "_outbox", "final_" + svc + "_inbox"} {
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
		_, _ = db.Exec(`DELETE FROM final_schema_migrations WHERE table_name = $1`, table)
		_, _ = db.Exec(`DELETE FROM final_topology WHERE outbox_table = $1`, table)
		_, _ = db.Exec(`DELETE FROM final_redeliveries WHERE outbox_table = $1`, table)
	}
}

// PostgresPool opens a pgxpool.Pool on the PostgreSQL test database; it is
// closed at the end of the test.
func PostgresPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		Unavailable(t, "PostgreSQL at %s: %v", PostgresDSN(), err)
	}
	t.Cleanup(pool.Close)
	return pool
}
