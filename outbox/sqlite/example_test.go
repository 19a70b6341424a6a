package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/sqlite"
)

// Open the database file with DSNParams (a busy timeout and WAL mode), and
// migrate the store before use.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "final-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	// "sqlite" is modernc.org/sqlite; "sqlite3" is github.com/ncruces/go-sqlite3/driver.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	ctx := context.Background()
	store, err := sqlite.New(db, "final_orders_outbox", sqlite.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := store.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := store.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: []byte("message")}); err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Commit(); err != nil {
		fmt.Println(err)
		return
	}
	recs, err := store.Claim(ctx, "relay-1", 100, 0, time.Minute)
	fmt.Println(len(recs), err)
	// Output: 1 <nil>
}

// Migrate says what a DSN lacks.
func ExampleStore_Migrate_unset() {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	store, _ := sqlite.New(db, "final_orders_outbox", sqlite.Options{})
	fmt.Println(store.Migrate(context.Background()))
	// Output: outbox/sqlite: database not set up for concurrent writers: journal_mode is "memory", want wal, busy_timeout is 0, want more than 0; open a database file with "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" in the DSN (modernc.org/sqlite and github.com/ncruces/go-sqlite3 alike; busy_timeout first)
}
