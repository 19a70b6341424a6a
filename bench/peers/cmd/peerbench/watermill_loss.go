package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/big"
)

// explainLost says where the rows of lost messages are: behind the
// position the forwarder's subscriber acknowledged (it went past them:
// they will never be forwarded), ahead of it (not yet reached), or absent.
func (p *watermillPhase) explainLost(ctx context.Context, lost map[uint64]bool) string {
	names := p.s.tableNames(p.fwdTopic)
	pg := p.s.c.db == "postgres"
	// A row's position: (transaction id, offset) on PostgreSQL, whose
	// subscriber reads in that order; the offset alone on MySQL.
	var ackedTx, ackedOff int64
	posQuery := "SELECT COALESCE(offset_acked, 0) FROM " + names[1] + " WHERE consumer_group = ''"
	rowQuery := "SELECT `offset`, 0, payload FROM " + names[0]
	if pg {
		posQuery = "SELECT COALESCE(offset_acked, 0), last_processed_transaction_id::text FROM " + names[1] + " WHERE consumer_group = ''"
		rowQuery = `SELECT "offset", transaction_id::text, payload FROM ` + names[0]
	}
	var err error
	if pg {
		var tx string
		if err = p.s.db.QueryRowContext(ctx, posQuery).Scan(&ackedOff, &tx); err == nil {
			ackedTx = parseXid(tx)
		}
	} else {
		err = p.s.db.QueryRowContext(ctx, posQuery).Scan(&ackedOff)
	}
	if err != nil && err != sql.ErrNoRows {
		return "position unknown: " + err.Error()
	}
	rows, err := p.s.db.QueryContext(ctx, rowQuery)
	if err != nil {
		return "rows unknown: " + err.Error()
	}
	defer rows.Close()
	var behind, ahead, found int
	for rows.Next() {
		var (
			off  int64
			txs  string
			body []byte
			env  struct{ Payload []byte }
		)
		if err := rows.Scan(&off, &txs, &body); err != nil {
			return "rows unreadable: " + err.Error()
		}
		if json.Unmarshal(body, &env) != nil || len(env.Payload) < 8 {
			continue
		}
		seq := uint64(env.Payload[0])<<56 | uint64(env.Payload[1])<<48 | uint64(env.Payload[2])<<40 | uint64(env.Payload[3])<<32 |
			uint64(env.Payload[4])<<24 | uint64(env.Payload[5])<<16 | uint64(env.Payload[6])<<8 | uint64(env.Payload[7])
		if !lost[seq] {
			continue
		}
		found++
		tx := parseXid(txs)
		if tx < ackedTx || (tx == ackedTx && off <= ackedOff) {
			behind++
		} else {
			ahead++
		}
	}
	if err := rows.Err(); err != nil {
		return "rows unreadable: " + err.Error()
	}
	pos := fmt.Sprintf("offset %d", ackedOff)
	if pg {
		pos = fmt.Sprintf("transaction %d, offset %d", ackedTx, ackedOff)
	}
	return fmt.Sprintf("of %d lost, %d rows are in the table behind the subscriber's acknowledged position (%s), skipped for good; "+
		"%d ahead of it, not reached; %d not found", len(lost), behind, pos, ahead, len(lost)-found)
}

func parseXid(s string) int64 {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || !n.IsInt64() {
		return 0
	}
	return n.Int64()
}
