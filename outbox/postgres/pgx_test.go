package postgres_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/pgxbus"
)

// pgxHarness is the setup pgxbus.New makes: the store on a *sql.DB over a
// pgxpool.Pool, and the transactions that insert and record native pgx.Tx
// of the same pool.
func pgxHarness(t *testing.T) (*sql.DB, func(ctx context.Context, _ *sql.DB) (outbox.Tx, error)) {
	pool := testenv.PostgresPool(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	bg := pgxbus.Beginner(pool)
	return db, func(ctx context.Context, _ *sql.DB) (outbox.Tx, error) { return bg.Begin(ctx) }
}

// The conformance suite, with its transactions pgx.Tx instead of *sql.Tx.
func TestConformanceOnPgxTx(t *testing.T) {
	db, begin := pgxHarness(t)
	outboxtest.Run(t, outboxtest.Harness{
		New:   func(t *testing.T) (outbox.Store, *sql.DB) { return newStoreOn(t, db) },
		Begin: begin,
	})
}

func TestInboxConformanceOnPgxTx(t *testing.T) {
	db, begin := pgxHarness(t)
	outboxtest.RunInbox(t, outboxtest.InboxHarness{
		New:   func(t *testing.T) (outbox.Inbox, *sql.DB) { return newInboxOn(t, db) },
		Begin: begin,
	})
}
