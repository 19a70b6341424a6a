// Package pgxbus runs a bus on a pgxpool.Pool and publishes inside a
// pgx.Tx, for PostgreSQL users of pgx who do not use database/sql:
//
//	bus := pgxbus.New("order_svc", pool, amqp.NewProvider(url), final.DefaultOptions())
//	bus.Subscribe("payment.received").Inbox().Handler(func(c *final.Context) error {
//		_, err := pgxbus.Tx(c).Exec(c.Context(), "UPDATE orders SET paid = true WHERE id = $1", id)
//		return err
//	})
//	bus.Start()
//
//	tx, err := pool.Begin(ctx)
//	// …
//	err = pgxbus.Transaction(ctx, bus, tx, func(txBus *final.TxBus) error {
//		if _, err := tx.Exec(ctx, "INSERT INTO orders …"); err != nil {
//			return err
//		}
//		return txBus.Publish("order.created", payload)
//	})
//
// The messages are written on the pgx.Tx itself. The bus's own statements
// (the relay, the deletes after confirms, the migrations) go through a
// *sql.DB that New opens on the same pool with pgx's stdlib.OpenDBFromPool,
// which keeps no idle connections of its own: size the pool for the bus
// too (a few connections beside the application's, and one per
// NumSubscriber for Inbox handlers, which hold theirs while they run).
package pgxbus

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/finalbus/final"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox/postgres"
)

// New returns a bus of svcName on pool: final.New on a *sql.DB over the
// pool, with the PostgreSQL dialect and a Beginner that begins Inbox
// transactions as pgx.Tx; opt.Dialect and opt.Beginner, when set, are
// replaced. The bus's Shutdown closes that *sql.DB and leaves the pool
// open: it is the caller's.
func New(svcName string, pool *pgxpool.Pool, provider mq.IProvider, opt final.Options) *final.Bus {
	db := stdlib.OpenDBFromPool(pool)
	// It can have no more than the pool has; saying so lets the bus size
	// what it holds (Options.OutboxHeldClaims) to the pool.
	db.SetMaxOpenConns(int(pool.Config().MaxConns))
	opt.Dialect = postgres.Dialect
	opt.Beginner = owningBeginner{beginner{pool}, db}
	return final.New(svcName, db, provider, opt)
}

// Transaction runs fn with a TxBus on tx, a transaction of the bus's
// database: it commits tx when fn returns nil and rolls it back when fn
// returns an error or panics, as final.Bus.TransactionContext does for a
// *sql.Tx.
func Transaction(ctx context.Context, bus *final.Bus, tx pgx.Tx, fn func(txBus *final.TxBus) error) error {
	return bus.DriverTransaction(ctx, Wrap(tx), fn)
}

// WithTx returns a TxBus on tx; commit it with TxBus.Commit. Committing
// tx directly also works: the relay then sends its messages after
// Options.OutboxScanAgoTime instead of at once.
func WithTx(ctx context.Context, bus *final.Bus, tx pgx.Tx) *final.TxBus {
	return bus.WithDriverTx(ctx, Wrap(tx))
}

// Tx returns the pgx.Tx an Inbox subscription's chain runs in on a bus
// made by New, or nil for other subscriptions. Write the handler's rows on
// it; the bus commits it when the chain succeeds.
func Tx(c *final.Context) pgx.Tx {
	txBus := c.TxBus()
	if txBus == nil {
		return nil
	}
	return Unwrap(txBus.DriverTx())
}
