package sqlite_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/outbox/sqlite"
)

// BenchmarkInsertClaimDelete measures a row's whole way through the
// store: inserted in a transaction of its own (as a business transaction
// would), then claimed and deleted by the relay in batches of 500. Each
// commit is synced to disk with synchronous=FULL (modernc.org/sqlite's
// default), and only at checkpoints with NORMAL (ncruces/go-sqlite3's
// default in WAL mode): a commit then survives a crash of the process,
// not of the machine.
func BenchmarkInsertClaimDelete(b *testing.B) {
	for _, d := range drivers {
		for _, sync := range []string{"FULL", "NORMAL"} {
			b.Run(d.name+"/synchronous="+sync, func(b *testing.B) {
				db := open(b, d, dbFile(b), sqlite.DSNParams+"&_pragma=synchronous("+sync+")")
				s := migrated(b, db)
				ctx := context.Background()
				body, _ := message.Marshal(message.New("bench.cycle", make([]byte, 100)))
				const rows = 500
				n := 0
				for b.Loop() {
					for i := 0; i < rows; i++ {
						tx, err := db.Begin()
						if err != nil {
							b.Fatal(err)
						}
						if _, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: body}); err != nil {
							b.Fatal(err)
						}
						if err := tx.Commit(); err != nil {
							b.Fatal(err)
						}
					}
					n += claimAll(b, s)
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkClaim measures the relay's loop over a backlog: claim a batch of
// 500, delete it (outboxtest.BenchClaims), on each driver.
func BenchmarkClaim(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			open := func(b *testing.B) (*sqlite.Store, *sql.DB) { return newStore(b, d) }
			outboxtest.BenchClaims(b, open, outboxtest.LeasedClaim[*sqlite.Store])
		})
	}
}

// claimAll claims and deletes batches of outboxtest.ClaimBatch rows until
// none is left, and returns how many it took.
func claimAll(b *testing.B, s *sqlite.Store) int {
	n := 0
	for {
		got, err := outboxtest.LeasedClaim(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		if got == 0 {
			return n
		}
		n += got
	}
}
