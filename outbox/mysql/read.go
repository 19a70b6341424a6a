package mysql

import (
	"context"
	"fmt"

	"github.com/finalbus/final/outbox"
)

var _ outbox.TxReader = (*Store)(nil)

// ReadTx implements outbox.TxReader.
func (s *Store) ReadTx(ctx context.Context, tx outbox.Tx, after int64) (outbox.Record, bool, error) {
	r, ok, err := outbox.ReadNextTx(ctx, tx, `SELECT id, message, COALESCE(order_key, 0), attempts FROM `+s.t.q+
		` WHERE id > ? ORDER BY id LIMIT 1`, after)
	if err != nil {
		return outbox.Record{}, false, fmt.Errorf("outbox/mysql: read: %w", err)
	}
	return r, ok, nil
}
