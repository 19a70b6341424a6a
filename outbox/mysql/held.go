package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/finalbus/final/outbox"
)

var _ outbox.Holder = (*Store)(nil)

// ClaimHeld implements outbox.Holder. The claim runs in READ COMMITTED and
// locks its rows by their primary key only: it finds them by a scan that
// takes no lock, then locks those no other transaction holds (FOR UPDATE
// SKIP LOCKED). A locking scan of the available_at index would also lock
// the first row past the available ones, a fresh row the fast path is
// about to delete, for the claim's whole life. So the business
// transactions' inserts and the fast path's deletes go on while the claim
// is held.
//
// idle is the session's wait_timeout while the claim is held, in whole
// seconds (at least one): past it the server closes the connection, which
// rolls the claim back. The session's own value is put back when the claim
// ends.
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
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	h := &held{s: s, conn: conn}
	h.tx, err = conn.BeginTx(context.WithoutCancel(ctx), &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		h.release()
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	h.recs, err = s.claimIn(ctx, h.tx, owner, limit, maxBytes, 0, true)
	if err == nil && len(h.recs) > 0 {
		err = h.holdFor(ctx, idle)
	}
	if err != nil || len(h.recs) == 0 {
		_ = h.tx.Rollback()
		h.release()
		return nil, err
	}
	decode(h.recs)
	h.forget = s.own.Hold(h.recs, start.Add(idle))
	return h, nil
}

// holdFor sets the session's wait_timeout to idle (whole seconds, at least
// one) while the claim is held, and keeps the session's own value to put
// back (a SET does not end the transaction). An empty claim never sets it.
func (h *held) holdFor(ctx context.Context, idle time.Duration) error {
	seconds := max(int64(math.Ceil(idle.Seconds())), 1)
	if _, err := h.tx.ExecContext(ctx, `SET @final_wait_timeout = @@SESSION.wait_timeout, SESSION wait_timeout = `+
		strconv.FormatInt(seconds, 10)); err != nil {
		return fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	h.timed = true
	return nil
}

// held is a claim held by its transaction.
type held struct {
	s    *Store
	conn *sql.Conn // returned to the pool when the claim ends
	tx   *sql.Tx
	recs []outbox.Record
	// timed: the session's wait_timeout is the claim's idle bound, its own
	// value kept in @final_wait_timeout.
	timed bool
	// forget takes the rows out of the store's own held rows (claim.Own);
	// nil until the claim holds them.
	forget func()
}

func (h *held) Records() []outbox.Record { return h.recs }

func (h *held) Fail(ctx context.Context, ids []int64, cause string) error {
	return h.s.fail(ctx, h.tx, ids, cause)
}

func (h *held) Commit(ctx context.Context, ids []int64) error {
	defer h.release()
	if err := h.s.delete(ctx, h.tx, ids); err != nil {
		_ = h.tx.Rollback()
		return err
	}
	if err := h.tx.Commit(); err != nil {
		return wrapError("claim commit", err)
	}
	return nil
}

func (h *held) Rollback() error {
	defer h.release()
	if err := h.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("outbox/mysql: claim rollback: %w", err)
	}
	return nil
}

// release puts the session's wait_timeout back on the claim's connection
// and returns it to the pool. A connection the server closed meanwhile
// fails the statement and is dropped by the pool.
func (h *held) release() {
	if h.conn == nil {
		return
	}
	if h.forget != nil {
		defer h.forget() // once the transaction has ended
	}
	if h.timed {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := h.conn.ExecContext(ctx, `SET SESSION wait_timeout = @final_wait_timeout`); err != nil {
			// Not put back: keep the connection out of the pool.
			_ = h.conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	_ = h.conn.Close()
	h.conn = nil
}
