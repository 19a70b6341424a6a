package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/postgres"
)

// BenchmarkClaim measures the relay's loop over a backlog: claim a batch of
// 500, delete it. keys=0 is a backlog without keys; otherwise its messages
// are spread over that many keys, which the claim keeps in id order.
func BenchmarkClaim(b *testing.B) {
	for _, keys := range []int{0, 1000, 1} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			db := testenv.Postgres(b)
			table := tableName(b, db, "_outbox")
			s, err := postgres.New(db, table, postgres.Options{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const backlog, batch = 20000, 500
			fill := func() {
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
			}
			rows := 0
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				fill()
				b.StartTimer()
				for {
					recs, err := s.Claim(ctx, "bench", batch, 0, time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					if len(recs) == 0 {
						break
					}
					ids := make([]int64, len(recs))
					for i, r := range recs {
						ids[i] = r.ID
					}
					if err := s.Delete(ctx, ids); err != nil {
						b.Fatal(err)
					}
					rows += len(recs)
				}
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
