package sqlite_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
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
					n += claimAll(b, s, 500)
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkClaim measures the relay's loop over a backlog: claim a batch of
// 500, delete it. keys=0 is a backlog without keys; otherwise its messages
// are spread over that many keys, which the claim keeps in id order.
func BenchmarkClaim(b *testing.B) {
	for _, d := range drivers {
		for _, keys := range []int{0, 1000, 1} {
			b.Run(fmt.Sprintf("%s/keys=%d", d.name, keys), func(b *testing.B) {
				s, db := newStore(b, d)
				ctx := context.Background()
				const backlog = 20000
				n := 0
				for b.Loop() {
					b.StopTimer()
					tx, err := db.Begin()
					if err != nil {
						b.Fatal(err)
					}
					for i := 0; i < backlog; i++ {
						m := message.New("bench.claim", []byte("p"))
						var key int64
						if keys > 0 {
							key = outbox.OrderKey(m.Topic, strconv.Itoa(i%keys))
						}
						body, _ := message.Marshal(m)
						if _, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: body, OrderKey: key}); err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					n += claimAll(b, s, 500)
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// claimAll claims and deletes batches of batch rows until none is left,
// and returns how many it took.
func claimAll(b *testing.B, s outbox.Store, batch int) int {
	ctx := context.Background()
	n := 0
	for {
		recs, err := s.Claim(ctx, "bench", batch, 0, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) == 0 {
			return n
		}
		ids := make([]int64, len(recs))
		for i, r := range recs {
			ids[i] = r.ID
		}
		if err := s.Delete(ctx, ids); err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
}
