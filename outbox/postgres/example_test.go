package postgres_test

import (
	"context"
	"database/sql"
	"log"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/postgres"
)

// A message written to the outbox in the transaction that changes the
// business data: both commit, or neither.
func Example() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@127.0.0.1:5432/shop?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	store, err := postgres.New(db, "final_orders_outbox", postgres.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE orders SET state = 'paid' WHERE id = $1`, 42); err != nil {
		log.Fatal(err)
	}
	body, err := message.Marshal(message.New("order.paid", []byte(`{"id":42}`)))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: body}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
}
