package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/finalbus/final/outbox"
)

var _ outbox.Holder = (*Store)(nil)

// ClaimHeld implements outbox.Holder. The claim runs in READ COMMITTED,
// where PostgreSQL locks the rows it takes and nothing between them, so the
// inserts of business transactions go on while it is held.
func (s *Store) ClaimHeld(ctx context.Context, owner string, limit, maxBytes int, idle time.Duration) (outbox.Held, error) {
	for attempt := 1; ; attempt++ {
		h, err := s.claimHeld(ctx, owner, limit, maxBytes, idle)
		if err == nil || attempt == maxClaimAttempts || !retryable(err) {
			return h, err
		}
	}
}

func (s *Store) claimHeld(ctx context.Context, owner string, limit, maxBytes int, idle time.Duration) (outbox.Held, error) {
	// ctx bounds the wait for a connection and the claim's statements, not
	// the transaction, which lasts until Commit or Rollback: database/sql
	// rolls back a transaction whose BeginTx context ends, and a relay
	// stopping must still be able to delete the rows its claims got
	// confirmed.
	start := time.Now() // before the claim's statements: its rows' idle bound (claim.Own) falls before the server's
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	var recs []outbox.Record
	err = s.holdFor(ctx, tx, idle)
	if err == nil {
		recs, err = s.claimIn(ctx, tx, owner, limit, maxBytes, 0, true)
	}
	if err != nil || len(recs) == 0 {
		_ = tx.Rollback()
		conn.Close()
		return nil, err
	}
	decode(recs)
	// The server's bound is idle in whole milliseconds (holdFor).
	until := start.Add(time.Duration(idleMillis(idle)) * time.Millisecond)
	return &held{s: s, conn: conn, tx: tx, recs: recs, forget: s.own.Hold(recs, until)}, nil
}

// holdFor sets the claim's idle_in_transaction_session_timeout (at least
// a millisecond, PostgreSQL's unit; 0 would turn it off) for tx alone.
func (s *Store) holdFor(ctx context.Context, tx *sql.Tx, idle time.Duration) error {
	ms := idleMillis(idle)
	if _, err := tx.ExecContext(ctx, `SELECT set_config('idle_in_transaction_session_timeout', $1, true)`, strconv.FormatInt(ms, 10)); err != nil {
		return fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	return nil
}

// idleMillis is idle as PostgreSQL's idle_in_transaction_session_timeout:
// whole milliseconds, at least one (0 would turn it off).
func idleMillis(idle time.Duration) int64 { return max(idle.Milliseconds(), 1) }

// held is a claim held by its transaction.
type held struct {
	s    *Store
	conn *sql.Conn // returned to the pool when the claim ends
	tx   *sql.Tx
	recs []outbox.Record
	// forget takes the rows out of the store's own held rows (claim.Own)
	// once the claim's transaction has ended.
	forget func()
}

func (h *held) Records() []outbox.Record { return h.recs }

func (h *held) Fail(ctx context.Context, ids []int64, cause string) error {
	return h.s.fail(ctx, h.tx, ids, cause, "")
}

func (h *held) Commit(ctx context.Context, ids []int64) error {
	defer h.end()
	if err := h.s.deleteHeld(ctx, h.tx, ids); err != nil {
		_ = h.tx.Rollback()
		return err
	}
	if err := h.tx.Commit(); err != nil {
		return wrapError("claim commit", err)
	}
	return nil
}

func (h *held) Rollback() error {
	defer h.end()
	if err := h.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("outbox/postgres: claim rollback: %w", err)
	}
	return nil
}

// end returns the claim's connection to the pool once its transaction has
// ended, and forgets its rows.
func (h *held) end() {
	h.conn.Close()
	h.forget()
}
