package sqlite_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/sqlite"
)

// Declarations are per outbox table (the conformance suite's Declarations
// case covers owners, liveness and replacement).
func TestDeclarationsRecorded(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		s, db := newStore(t, d)
		ctx := context.Background()
		other, err := sqlite.New(db, "final_other_outbox", sqlite.Options{})
		require.NoError(t, err)
		require.NoError(t, other.Migrate(ctx))

		got, err := s.Declarations(ctx, time.Minute)
		require.NoError(t, err)
		require.Empty(t, got)
		first := []outbox.Subscription{{Topic: "b", Kind: outbox.KindCompeting}, {Topic: "a", Kind: outbox.KindOrdered}, {Topic: "a", Kind: outbox.KindOrdered}}
		require.NoError(t, s.Declare(ctx, "i1", first))
		require.NoError(t, other.Declare(ctx, "i1", []outbox.Subscription{{Topic: "x", Kind: outbox.KindBroadcast}}))
		got, err = s.Declarations(ctx, time.Minute)
		require.NoError(t, err)
		var subs []outbox.Subscription
		for _, d := range got {
			require.True(t, d.Live)
			subs = append(subs, d.Subscription)
		}
		require.Equal(t, []outbox.Subscription{{Topic: "a", Kind: outbox.KindOrdered}, {Topic: "b", Kind: outbox.KindCompeting}}, subs)
		got, err = other.Declarations(ctx, time.Minute)
		require.NoError(t, err)
		require.Len(t, got, 1, "another table's record is its own")
	})
}

// Redeliveries are counted per outbox table, topic and UUID (byte for
// byte), concurrently without a lost count, and forgotten.
func TestRedeliveriesCounted(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		s, db := newStore(t, d)
		ctx := context.Background()
		other, err := sqlite.New(db, "final_other_outbox", sqlite.Options{})
		require.NoError(t, err)
		require.NoError(t, other.Migrate(ctx))

		for want := 1; want <= 3; want++ {
			n, err := s.CountRedelivery(ctx, "t", "u")
			require.NoError(t, err)
			require.Equal(t, want, n)
		}
		for _, k := range []struct{ topic, uuid string }{{"t", "U"}, {"t", "u "}, {"T", "u"}} {
			n, err := s.CountRedelivery(ctx, k.topic, k.uuid)
			require.NoError(t, err)
			require.Equal(t, 1, n, "(%q, %q) is another message", k.topic, k.uuid)
		}
		n, err := other.CountRedelivery(ctx, "t", "u")
		require.NoError(t, err)
		require.Equal(t, 1, n, "another table counts on its own")

		const goroutines, each = 8, 10
		var wg sync.WaitGroup
		seen := make(chan int, goroutines*each)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					n, err := s.CountRedelivery(ctx, "t", "race")
					if err != nil {
						t.Errorf("CountRedelivery: %v", err)
						return
					}
					seen <- n
				}
			}()
		}
		wg.Wait()
		close(seen)
		counts := map[int]bool{}
		for n := range seen {
			require.False(t, counts[n], "count %d returned twice", n)
			counts[n] = true
		}
		require.Len(t, counts, goroutines*each)

		require.NoError(t, s.ForgetRedeliveries(ctx, "t", "u"))
		n, err = s.CountRedelivery(ctx, "t", "u")
		require.NoError(t, err)
		require.Equal(t, 1, n, "counted from 1 again once forgotten")
	})
}
