package pgxbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finalbus/final/outbox"
)

// Wrap adapts tx to outbox.Tx, the transaction the outbox and inbox write
// in; a nil tx gives a nil outbox.Tx.
func Wrap(tx pgx.Tx) outbox.Tx {
	if tx == nil {
		return nil
	}
	return pgxTx{tx}
}

// Unwrap returns the pgx.Tx behind tx when Wrap made it, and nil
// otherwise.
func Unwrap(tx outbox.Tx) pgx.Tx {
	if t, ok := tx.(pgxTx); ok {
		return t.tx
	}
	return nil
}

// Beginner returns an outbox.Beginner that begins a pgx.Tx on pool, with
// default options.
func Beginner(pool *pgxpool.Pool) outbox.Beginner { return beginner{pool} }

type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t pgxTx) QueryRow(ctx context.Context, query string, args ...any) outbox.RowScanner {
	return t.tx.QueryRow(ctx, query, args...)
}

func (t pgxTx) Commit(ctx context.Context) error { return ended(t.tx.Commit(ctx)) }

func (t pgxTx) Rollback(ctx context.Context) error { return ended(t.tx.Rollback(ctx)) }

// ended makes pgx's "tx is closed" match sql.ErrTxDone, as outbox.Tx asks.
func ended(err error) error {
	if errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("%w: %w", sql.ErrTxDone, err)
	}
	return err
}

type beginner struct{ pool *pgxpool.Pool }

// owningBeginner is the Beginner New gives the bus: it also owns the
// *sql.DB New opened on the pool, which the bus's Shutdown closes through
// it (the pool stays open).
type owningBeginner struct {
	beginner
	db *sql.DB
}

// CloseWithBus implements outbox.BusOwned.
func (b owningBeginner) CloseWithBus() error { return b.db.Close() }

func (b beginner) Begin(ctx context.Context) (outbox.Tx, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgxTx{tx}, nil
}
