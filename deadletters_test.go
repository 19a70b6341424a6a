package final_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// Messages a broken handler dead-lettered can be listed with their reasons
// and, once the handler is fixed, replayed.
func TestDeadLettersListedAndReplayed(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	var broken atomic.Bool
	broken.Store(true)
	b := e.start(e.svc, e.url, testOptions(t).WithRetryCount(0), func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			if broken.Load() {
				return errors.New("database schema out of date")
			}
			return rec.handle(c)
		})
	})
	ctx := context.Background()
	var refs []string
	for i := 0; i < 5; i++ {
		ref := fmt.Sprintf("d%d", i)
		refs = append(refs, ref)
		require.NoError(t, b.Publish(topic, []byte(ref)))
	}
	var dead []final.DeadLetter
	testenv.Eventually(t, 10*time.Second, func() bool {
		var err error
		dead, err = b.DeadLetters(ctx, 100)
		return err == nil && len(dead) == 5
	}, "five dead letters")
	for _, d := range dead {
		require.NoError(t, d.Err)
		require.Equal(t, topic, d.Topic)
		require.Equal(t, topic, d.Message.Topic)
		require.True(t, strings.Contains(d.Reason, "database schema out of date"), d.Reason)
		require.False(t, d.At.IsZero())
	}

	broken.Store(false)
	n, err := b.ReplayDeadLetters(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	rec.waitAll(t, refs, 10*time.Second)
	dead, err = b.DeadLetters(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, dead)

	require.NoError(t, b.Shutdown())
	_, err = b.DeadLetters(ctx, 1)
	require.ErrorIs(t, err, final.ErrClosed)
}

// A keyed message dead-lettered by an ordered subscription goes back to its
// key's shard queue when replayed, as when it was first published, not to
// the shard of unkeyed messages.
func TestOrderedDeadLetterReplayedToItsShard(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".ordered"
	cfg := mq.Config{Service: e.svc, Ordered: []string{topic}, Prefetch: 4, Logger: testOptions(t).Logger}
	queues := amqp.Queues(cfg) // the 16 shard queues in shard order, then the dead-letter queue
	testenv.DropQueues(t, queues...)
	key := "account-0"
	for i := 1; mq.Shard(key) == 0; i++ {
		key = fmt.Sprintf("account-%d", i)
	}

	b := final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t).WithRetryCount(0))
	b.Subscribe(topic).Ordered().Handler(func(c *final.Context) error { return errors.New("not yet") })
	require.NoError(t, b.Start())
	ctx := context.Background()
	require.NoError(t, b.PublishContext(ctx, topic, []byte("k1"), message.WithKey(key)))
	testenv.Eventually(t, 10*time.Second, func() bool {
		dead, err := b.DeadLetters(ctx, 10)
		return err == nil && len(dead) == 1
	}, "one dead letter")
	require.NoError(t, b.Shutdown())

	// Replay with nobody consuming, and look where it went.
	p := amqp.NewProvider(e.url)
	require.NoError(t, p.Init(ctx, cfg))
	defer p.Close()
	n, err := p.ReplayDeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ch := e.channel()
	for i, want := range map[int]int{mq.Shard(key): 1, 0: 0} {
		q, err := ch.QueueDeclarePassive(queues[i], true, false, false, false, amqp091.Table{"x-single-active-consumer": true})
		require.NoError(t, err)
		require.Equal(t, want, q.Messages, "messages in shard %d", i)
	}
}
