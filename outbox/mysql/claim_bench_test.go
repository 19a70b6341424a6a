package mysql_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/outboxtest"
)

// BenchmarkClaim measures the relay's loop over a backlog with leased
// claims: claim a batch of 500, delete it (outboxtest.BenchClaims).
func BenchmarkClaim(b *testing.B) {
	outboxtest.BenchClaims(b, openBench, outboxtest.LeasedClaim[*mysql.Store])
}

// BenchmarkClaimHeld is BenchmarkClaim with held claims, as the relay
// makes them by default (Options.OutboxHeldClaims): claim a batch of 500
// held by the claim's transaction, delete it in that transaction.
func BenchmarkClaimHeld(b *testing.B) {
	outboxtest.BenchClaims(b, openBench, outboxtest.HeldClaim[*mysql.Store])
}

// BenchmarkClaimHeldOverlapped claims as the relay's two held claims do,
// each taken while the one before it is held.
func BenchmarkClaimHeldOverlapped(b *testing.B) {
	outboxtest.BenchClaims(b, openBench, outboxtest.OverlappedHeldClaims[*mysql.Store]())
}

func openBench(b *testing.B) (*mysql.Store, *sql.DB) {
	db := testenv.DB(b)
	s, err := mysql.New(db, "final_"+testenv.Service(b, db)+"_outbox", mysql.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, db
}
