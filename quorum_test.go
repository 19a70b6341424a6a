package final_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// With amqp.WithQuorumQueues a service's queues are quorum queues (for a
// RabbitMQ cluster; here a cluster of one node): plain and Ordered
// subscriptions, dead-lettering, replay and a restart that drops an Ordered
// subscription behave as on classic queues.
func TestQuorumQueuesCarryEverySubscriptionKind(t *testing.T) {
	e := newEnv(t)
	plain, ordered := e.svc+".p", e.svc+".o"
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{ordered}})...)
	start := func(subscribe func(b *final.Bus)) *final.Bus {
		b := final.New(e.svc, e.db, amqp.NewProvider(e.url, amqp.WithQuorumQueues()), testOptions(t))
		subscribe(b)
		require.NoError(t, b.Start())
		t.Cleanup(func() { require.NoError(t, b.Shutdown()) })
		return b
	}
	var (
		mu   sync.Mutex
		seqs = map[string][]int{}
	)
	rec := newRecorder()
	var poisoned atomic.Bool // the first call fails for good; the replay's succeeds
	b := start(func(b *final.Bus) {
		b.Subscribe(plain).Handler(func(c *final.Context) error {
			if string(c.Message.Payload) == "poison" && poisoned.CompareAndSwap(false, true) {
				return final.Permanent(errors.New("poison"))
			}
			return rec.handle(c)
		})
		b.Subscribe(ordered).Ordered().Handler(func(c *final.Context) error {
			var seq int
			_, _ = fmt.Sscanf(string(c.Message.Payload), "%d", &seq)
			mu.Lock()
			seqs[c.Key] = append(seqs[c.Key], seq)
			mu.Unlock()
			return nil
		})
	})
	const keys, perKey = 4, 25
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
		for i := 0; i < perKey; i++ {
			for k := 0; k < keys; k++ {
				if err := txBus.Publish(ordered, []byte(fmt.Sprint(i)), message.WithKey(fmt.Sprintf("k%d", k))); err != nil {
					return err
				}
			}
		}
		return txBus.Publish(plain, []byte("poison"))
	}))
	testenv.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range seqs {
			n += len(s)
		}
		return n == keys*perKey
	}, "ordered messages handled")
	mu.Lock()
	for k, s := range seqs {
		for i, seq := range s {
			require.Equal(t, i, seq, "key %s in order", k)
		}
	}
	mu.Unlock()

	// A bound against a hang for the rest of the test, the wait below
	// and what follows it included.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testenv.Eventually(t, 20*time.Second, func() bool {
		dls, err := b.DeadLetters(ctx, 10)
		require.NoError(t, err)
		return len(dls) == 1
	}, "poison dead-lettered")
	require.NoError(t, b.Shutdown())

	// Restart without the Ordered subscription: its 16 quorum shard queues go.
	rec2 := newRecorder()
	b2 := start(func(b *final.Bus) { b.Subscribe(plain).Handler(rec2.handle) })
	for i := 0; i < mq.OrderShards; i++ {
		q := amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{ordered}})[i]
		require.False(t, e.queueExists(q), "shard queue %s is gone", q)
	}
	n, err := b2.ReplayDeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rec2.waitAll(t, []string{"poison"}, 20*time.Second)
}
