package outboxtest

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// ClaimBatch is the rows a relay's claim takes in BenchClaims' loops.
const ClaimBatch = 500

// BenchClaims measures a relay's loop over a backlog, as the store alone
// allows it: for each iteration it fills a backlog of 20,000 rows, then
// drains it with claim, which claims a batch, deletes it and returns how
// many rows it took (0: none left). keys=0 is a backlog without order
// keys; otherwise its messages are spread over that many keys, which a
// claim keeps in id order. open returns a migrated store on a fresh table
// and its database. It reports rows/s.
func BenchClaims[S outbox.Store](b *testing.B, open func(b *testing.B) (S, *sql.DB), claim func(ctx context.Context, s S) (int, error)) {
	for _, keys := range []int{0, 1000, 1} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			s, db := open(b)
			ctx := context.Background()
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
				b.StopTimer()
				if left, err := s.Len(ctx); err != nil || left != 0 {
					b.Fatalf("%d rows left after the claims found none (%v): the backlog was not drained", left, err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// LeasedClaim is BenchClaims' claim with leases: claim a batch, delete it.
func LeasedClaim[S outbox.Store](ctx context.Context, s S) (int, error) {
	recs, err := s.Claim(ctx, "bench", ClaimBatch, 0, time.Minute)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	return len(recs), s.Delete(ctx, RecordIDs(recs))
}

// HeldClaim is BenchClaims' claim held by its transaction (outbox.Holder),
// as the relay makes them by default: claim a batch, delete it in the
// claim's transaction.
func HeldClaim[S outbox.Holder](ctx context.Context, s S) (int, error) {
	held, err := s.ClaimHeld(ctx, "bench", ClaimBatch, 0, time.Minute)
	if err != nil || held == nil {
		return 0, err
	}
	recs := held.Records()
	return len(recs), held.Commit(ctx, RecordIDs(recs))
}

// OverlappedHeldClaims returns BenchClaims' claim held the way the relay's
// two held claims (OutboxHeldClaims) go while their messages are
// published: each claim is taken while the one before it is still held,
// which then commits. It counts the rows a claim takes; once a claim finds
// none, the one still held commits and the next call looks again, so
// that a key held back behind it is taken too.
func OverlappedHeldClaims[S outbox.Holder]() func(ctx context.Context, s S) (int, error) {
	var open outbox.Held
	return func(ctx context.Context, s S) (int, error) {
		for {
			next, err := s.ClaimHeld(ctx, "bench", ClaimBatch, 0, time.Minute)
			if err != nil {
				return 0, err
			}
			before := open
			if before != nil {
				if err := before.Commit(ctx, RecordIDs(before.Records())); err != nil {
					return 0, err
				}
			}
			open = next
			if next != nil {
				return len(next.Records()), nil
			}
			if before == nil {
				return 0, nil
			}
		}
	}
}

// RecordIDs returns the ids of recs.
func RecordIDs(recs []outbox.Record) []int64 {
	ids := make([]int64, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}
