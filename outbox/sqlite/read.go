package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

var _ outbox.TxReader = (*Store)(nil)

// ReadTx implements outbox.TxReader.
func (s *Store) ReadTx(ctx context.Context, tx outbox.Tx, after int64) (outbox.Record, bool, error) {
	var r outbox.Record
	err := tx.QueryRow(ctx, `SELECT id, message, COALESCE(order_key, 0), attempts FROM `+s.t.q+
		` WHERE id > ? ORDER BY id LIMIT 1`, after).Scan(&r.ID, &r.Body, &r.OrderKey, &r.Attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.Record{}, false, nil
	}
	if err != nil {
		return outbox.Record{}, false, wrapError("read", err)
	}
	r.Message, r.Err = message.Unmarshal(r.Body)
	return r, true, nil
}
