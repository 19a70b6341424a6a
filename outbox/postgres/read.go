package postgres

import (
	"context"

	"github.com/finalbus/final/outbox"
)

var (
	_ outbox.TxReader = (*Store)(nil)
	_ outbox.Reader   = (*Store)(nil)
)

// readColumns are the columns outbox.ReadNextTx and outbox.ReadRows scan.
const readColumns = `id, message, COALESCE(order_key, 0), attempts`

// ReadTx implements outbox.TxReader.
func (s *Store) ReadTx(ctx context.Context, tx outbox.Tx, after int64) (outbox.Record, bool, error) {
	r, ok, err := outbox.ReadNextTx(ctx, tx, `SELECT `+readColumns+` FROM `+s.t.q+
		` WHERE id > $1 ORDER BY id LIMIT 1`, after)
	if err != nil {
		return outbox.Record{}, false, wrapError("read", err)
	}
	return r, ok, nil
}

// Read implements outbox.Reader.
func (s *Store) Read(ctx context.Context, ids []int64) ([]outbox.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	recs, err := outbox.ReadRows(ctx, s.db, `SELECT `+readColumns+` FROM `+s.t.q+
		` WHERE id = ANY($1::bigint[]) ORDER BY id`, idArray(ids))
	if err != nil {
		return nil, wrapError("read", err)
	}
	return recs, nil
}
