package main

import (
	"context"
	"database/sql"
	"time"
)

// settleSQL brings the database to rest after earlier phases, as
// cmd/finalbench does before each of its phases: on MariaDB/MySQL it waits,
// up to a minute, for InnoDB to purge what they deleted; on PostgreSQL it
// vacuums tables (quoted names).
func settleSQL(ctx context.Context, db *sql.DB, dbName string, tables []string) {
	if dbName == "postgres" {
		for _, t := range tables {
			_, _ = db.ExecContext(ctx, "VACUUM "+t)
		}
		return
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var n int64
		err := db.QueryRowContext(ctx, "SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&n)
		if err != nil || n < 1000 {
			return
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}
