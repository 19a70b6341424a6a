package outbox

import (
	"context"
	"database/sql"
)

// Tx is a database transaction as the stores write in it: the business
// transaction a message is published in, or the one the bus begins for an
// Inbox handler. SQLTx adapts a *sql.Tx; a driver's native transaction
// gets an adapter of its own (package pgxbus adapts a pgx.Tx), so that
// its users need no database/sql.
//
// Statements use the placeholders of the database's dialect. Commit and
// Rollback of a transaction that has already ended return an error
// wrapping sql.ErrTxDone, whatever the driver.
type Tx interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	// QueryRow runs a query that returns at most one row; Scan returns an
	// error matching sql.ErrNoRows (errors.Is) when there is none, as pgx
	// does since v5.6.
	QueryRow(ctx context.Context, query string, args ...any) RowScanner
	// Commit commits the transaction.
	Commit(ctx context.Context) error
	// Rollback rolls the transaction back.
	Rollback(ctx context.Context) error
}

// RowScanner is the row QueryRow returns: *sql.Row and pgx.Row are
// RowScanners.
type RowScanner interface {
	Scan(dest ...any) error
}

// Beginner begins transactions. The bus begins an Inbox handler's
// transaction with it; by default it begins them on its *sql.DB.
type Beginner interface {
	Begin(ctx context.Context) (Tx, error)
}

// BusOwned is implemented by a Beginner that holds something for the bus
// it is given to (pgxbus's holds the *sql.DB it opened on the pool): the
// bus's Shutdown calls CloseWithBus once the bus has stopped. A Beginner of
// the application's own, which merely begins on the application's
// database, does not implement it, and nothing of it is closed.
type BusOwned interface {
	CloseWithBus() error
}

// SQLTx adapts tx to Tx; a nil tx gives a nil Tx.
func SQLTx(tx *sql.Tx) Tx {
	if tx == nil {
		return nil
	}
	return sqlTx{tx}
}

// AsSQLTx returns the *sql.Tx behind tx when SQLTx made it, and nil
// otherwise.
func AsSQLTx(tx Tx) *sql.Tx {
	if t, ok := tx.(sqlTx); ok {
		return t.tx
	}
	return nil
}

// SQLBeginner begins transactions on db with BeginTx and default options.
func SQLBeginner(db *sql.DB) Beginner { return sqlBeginner{db} }

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t sqlTx) QueryRow(ctx context.Context, query string, args ...any) RowScanner {
	return t.tx.QueryRowContext(ctx, query, args...)
}

// Commit ignores ctx: a *sql.Tx ends with the context it was begun with.
func (t sqlTx) Commit(context.Context) error { return t.tx.Commit() }

// Rollback ignores ctx, as Commit does.
func (t sqlTx) Rollback(context.Context) error { return t.tx.Rollback() }

type sqlBeginner struct{ db *sql.DB }

func (b sqlBeginner) Begin(ctx context.Context) (Tx, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqlTx{tx}, nil
}
