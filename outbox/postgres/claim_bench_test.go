package postgres_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/outbox/postgres"
)

// BenchmarkClaim measures the relay's loop over a backlog with leased
// claims: claim a batch of 500, delete it (outboxtest.BenchClaims).
func BenchmarkClaim(b *testing.B) {
	outboxtest.BenchClaims(b, openBench, outboxtest.LeasedClaim[*postgres.Store])
}

// BenchmarkClaimHeld is BenchmarkClaim with held claims, as the relay
// makes them by default (Options.OutboxHeldClaims): claim a batch of 500
// held by the claim's transaction, delete it in that transaction.
func BenchmarkClaimHeld(b *testing.B) {
	outboxtest.BenchClaims(b, openBench, outboxtest.HeldClaim[*postgres.Store])
}

// BenchmarkClaimHeldOverlapped claims as the relay's two held claims do,
// each taken while the one before it is held.
func BenchmarkClaimHeldOverlapped(b *testing.B) {
	outboxtest.BenchClaims(b, openBench, outboxtest.OverlappedHeldClaims[*postgres.Store]())
}

func openBench(b *testing.B) (*postgres.Store, *sql.DB) {
	db := testenv.Postgres(b)
	s, err := postgres.New(db, tableName(b, db, "_outbox"), postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, db
}
