package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/outbox"
)

// A claim that looks past a held-back key in a second pass does not take
// again a row it leased in the first with a lease of zero, which leaves
// the row available at the claim's own time.
func TestZeroLeaseClaimsARowOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		s, _ := newStore(t, d)
		ctx := context.Background()
		_, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("held"), OrderKey: 7, AvailableIn: time.Hour})
		require.NoError(t, err)
		_, err = s.Insert(ctx, nil, outbox.Row{Body: []byte("behind"), OrderKey: 7})
		require.NoError(t, err)
		free, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("free")})
		require.NoError(t, err)
		recs, err := s.Claim(ctx, "a", 10, 0, 0)
		require.NoError(t, err)
		require.Len(t, recs, 1, "claimed %v", recs)
		require.Equal(t, free, recs[0].ID)
	})
}

// A claim that fails inside its transaction rolls it back before its
// connection goes back to the pool: the write lock is free at once for
// another process that will not wait for it.
func TestFailedClaimReleasesTheWriteLock(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		s, db := newStoreAt(t, d, path)
		db.SetMaxOpenConns(1) // the claim's connection is the one kept
		ctx := context.Background()
		_, err := db.Exec(`ALTER TABLE ` + table + ` RENAME TO gone`)
		require.NoError(t, err)
		_, err = s.Claim(ctx, "a", 10, 0, time.Minute)
		require.Error(t, err)

		other := open(t, d, path, "_pragma=busy_timeout(0)")
		_, err = other.Exec(`CREATE TABLE after_the_claim (x INTEGER)`)
		require.NoError(t, err, "the failed claim's transaction still holds the write lock")
	})
}
