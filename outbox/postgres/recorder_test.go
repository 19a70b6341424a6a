package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/postgres"
)

// Declarations are per instance and per outbox table (the conformance
// suite's Declarations case covers liveness and replacement); a
// subscription listed twice is recorded once.
func TestDeclarationsRecorded(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	ds, err := s.Declarations(ctx, time.Minute)
	require.NoError(t, err)
	require.Empty(t, ds)

	want := []outbox.Subscription{{Topic: "a", Kind: outbox.KindCompeting}, {Topic: "b", Kind: outbox.KindOrdered}}
	require.NoError(t, s.Declare(ctx, "i1", append(want, want[0])))

	// Another service's record is its own.
	other, err := postgres.New(db, tableName(t, db, "_outbox"), postgres.Options{})
	require.NoError(t, err)
	require.NoError(t, other.Migrate(ctx))
	require.NoError(t, other.Declare(ctx, "i1", []outbox.Subscription{{Topic: "c", Kind: outbox.KindBroadcast}}))

	ds, err = s.Declarations(ctx, time.Minute)
	require.NoError(t, err)
	var got []outbox.Subscription
	for _, d := range ds {
		require.Equal(t, "i1", d.Owner)
		require.True(t, d.Live)
		got = append(got, d.Subscription)
	}
	require.Equal(t, want, got)
}

// Concurrent counts of one message each get a number of their own; the
// count is per message and per outbox table, and forgotten on request.
func TestRedeliveriesCounted(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	const n = 8
	var (
		mu  sync.Mutex
		got []int
		wg  sync.WaitGroup
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.CountRedelivery(ctx, "t", "u1")
			if err != nil {
				t.Errorf("CountRedelivery: %v", err)
				return
			}
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(got)
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, got)

	c, err := s.CountRedelivery(ctx, "t", "u2")
	require.NoError(t, err)
	require.Equal(t, 1, c, "another uuid")
	c, err = s.CountRedelivery(ctx, "t2", "u1")
	require.NoError(t, err)
	require.Equal(t, 1, c, "another topic")
	other, err := postgres.New(db, tableName(t, db, "_outbox"), postgres.Options{})
	require.NoError(t, err)
	require.NoError(t, other.Migrate(ctx))
	c, err = other.CountRedelivery(ctx, "t", "u1")
	require.NoError(t, err)
	require.Equal(t, 1, c, "another outbox table")

	require.NoError(t, s.ForgetRedeliveries(ctx, "t", "u1"))
	c, err = s.CountRedelivery(ctx, "t", "u1")
	require.NoError(t, err)
	require.Equal(t, 1, c, "counted again from one after Forget")
}
