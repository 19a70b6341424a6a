package main

import (
	"context"
	"database/sql"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
)

// TestRawTransactionOnEachDatabase runs each database's description
// against the real database: the setup, the raw transaction (business row
// and outbox-shaped rows), the settling, the emptying and the teardown.
// It uses the benchmark's fixed table names, so it must not run beside a
// benchmark on the same database.
func TestRawTransactionOnEachDatabase(t *testing.T) {
	for _, name := range []string{"mysql", "postgres", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			d := databases[name]
			dsn, tmp, err := d.dsn("")
			if err != nil {
				t.Fatal(err)
			}
			if tmp != "" {
				t.Cleanup(func() { os.RemoveAll(tmp) })
			}
			db, err := sql.Open(d.driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := db.PingContext(ctx); err != nil {
				testenv.Unavailable(t, "%s at %s: %v", name, dsn, err)
			}

			e := &benchEnv{cfg: config{db: d, broker: rabbitMQ{addr: testenv.AMQPURL()}, size: 256}, db: db}
			if err := e.setup(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.teardown)
			count := func(table string) int {
				var n int
				if err := db.QueryRow("SELECT COUNT(*) FROM " + d.quote(table)).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			// One insert per row, then all rows in one (-batch).
			for _, batch := range []bool{false, true} {
				e.cfg.batch = batch
				raw, err := e.prepareRaw(3)
				if err != nil {
					t.Fatal(err)
				}
				if want := batch && name != "sqlite"; (raw.rows != nil) != want {
					t.Fatalf("batch %v: multi-row insert prepared: %v, want %v (as the %s store)", batch, raw.rows != nil, want, name)
				}
				body, err := message.Marshal(message.New("bench.raw", e.payload(0)))
				if err != nil {
					t.Fatal(err)
				}
				if err := raw.commit(body, 3); err != nil {
					t.Fatalf("batch %v: raw transaction: %v", batch, err)
				}
				if biz, out := count(bizTable), count(rawOutbox); biz != 1 || out != 3 {
					t.Fatalf("batch %v: after one raw transaction of 3 messages: %d business rows, %d outbox rows; want 1, 3", batch, biz, out)
				}
				var waiting int
				if err := db.QueryRow("SELECT COUNT(*) FROM " + d.quote(rawOutbox) + " WHERE available_at > create_at").Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting != 3 {
					t.Fatalf("batch %v: %d of 3 raw rows are available later than created; the raw insert must delay them as the store's does", batch, waiting)
				}
				e.settle()
				raw.close()
				if biz, out := count(bizTable), count(rawOutbox); biz != 0 || out != 0 {
					t.Fatalf("batch %v: after close: %d business rows, %d outbox rows; want none", batch, biz, out)
				}
			}
			want := map[string][]string{"mysql": {"MariaDB", "MySQL"}, "postgres": {"PostgreSQL"}, "sqlite": {"SQLite"}}[name]
			if v, _ := e.versions(); !slices.Contains(want, label(v)) {
				t.Fatalf("version %q labelled %q, want one of %v", v, label(v), want)
			}
		})
	}
}

func TestLabel(t *testing.T) {
	for version, want := range map[string]string{
		"10.11.19-MariaDB-0+deb12u1": "MariaDB",
		"8.0.36":                     "MySQL",
		"PostgreSQL 15.20 (Debian 15.20-0+deb12u1)": "PostgreSQL",
		"SQLite 3.54.1": "SQLite",
	} {
		if got := label(version); got != want {
			t.Errorf("label(%q) = %q, want %q", version, got, want)
		}
	}
}
