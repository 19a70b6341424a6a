package mysql_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
)

// BenchmarkClaim measures the relay's loop over a backlog with leased
// claims: claim a batch of 500, delete it. keys=0 is a backlog without
// keys; otherwise its messages are spread over that many keys, which the
// claim keeps in id order.
func BenchmarkClaim(b *testing.B) {
	benchClaims(b, func(ctx context.Context, s *mysql.Store) (int, error) {
		recs, err := s.Claim(ctx, "bench", claimBatch, 0, time.Minute)
		if err != nil || len(recs) == 0 {
			return 0, err
		}
		return len(recs), s.Delete(ctx, recordIDs(recs))
	})
}

// BenchmarkClaimHeld is BenchmarkClaim with held claims, as the relay
// makes them by default (Options.OutboxHeldClaims): claim a batch of 500
// held by the claim's transaction, delete it in that transaction.
func BenchmarkClaimHeld(b *testing.B) {
	benchClaims(b, func(ctx context.Context, s *mysql.Store) (int, error) {
		held, err := s.ClaimHeld(ctx, "bench", claimBatch, 0, time.Minute)
		if err != nil || held == nil {
			return 0, err
		}
		recs := held.Records()
		return len(recs), held.Commit(ctx, recordIDs(recs))
	})
}

const claimBatch = 500

func recordIDs(recs []outbox.Record) []int64 {
	ids := make([]int64, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

// benchClaims fills a backlog of 20,000 rows per iteration and drains it
// with claim, which returns the rows it claimed and deleted (0: none left).
func benchClaims(b *testing.B, claim func(ctx context.Context, s *mysql.Store) (int, error)) {
	for _, keys := range []int{0, 1000, 1} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			db := testenv.DB(b)
			table := "final_" + testenv.Service(b, db) + "_outbox"
			s, err := mysql.New(db, table, mysql.Options{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const backlog = 20000
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
					n, err := claim(ctx, s)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
					rows += n
				}
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
