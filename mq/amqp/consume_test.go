package amqp_test

import (
	"context"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// When the broker cancels the consumer while the connection lives on (here:
// the queue is deleted), the provider declares the topology again and
// consumes anew on the same channel.
func TestConsumerRestartsWhenQueueIsDeleted(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".t"
	p := amqp.NewProvider(url, amqp.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Topics: []string{topic}, Prefetch: 4, Logger: quiet()}))
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deliveries, err := p.Consume(ctx)
	require.NoError(t, err)

	conn, err := amqp091.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete("final."+svc, false, false, false)
	require.NoError(t, err)

	want := message.New(topic, []byte("after-delete"))
	testenv.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conf, err := p.Publish(ctx, want)
		return err == nil && conf.Wait(ctx) == nil // unroutable until the queue is back
	}, "queue declared again")
	select {
	case d := <-deliveries:
		m, err := d.Message()
		require.NoError(t, err)
		require.Equal(t, want.UUID, m.UUID)
		require.NoError(t, d.Ack())
	case <-time.After(10 * time.Second):
		t.Fatal("consumer did not restart")
	}
}

// Fire-and-forget publishes are not mandatory: an unroutable one is
// dropped by the broker, and its confirmation is still an ack.
func TestFireAndForgetIsNotMandatory(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	p := amqp.NewProvider(url)
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Logger: quiet()}))
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conf, err := p.Publish(ctx, message.New(svc+".nobody", nil, message.WithConfirm(false)))
	require.NoError(t, err)
	require.NoError(t, conf.Wait(ctx))
}

// Closing an instance that holds a shard's deliveries, one handed out and
// one the provider has not handed out yet, gives them back in order: the
// next instance receives the key's messages in publish order. Quorum
// queues redeliver returned messages in the order they came back, so the
// provider must not give back the second one before the first.
func TestCloseGivesAShardBackInOrder(t *testing.T) {
	url := testenv.AMQP(t)
	for _, quorum := range []bool{false, true} {
		t.Run(map[bool]string{false: "classic", true: "quorum"}[quorum], func(t *testing.T) {
			var opts []amqp.Option
			if quorum {
				opts = append(opts, amqp.WithQuorumQueues())
			}
			svc := testenv.Service(t, nil)
			topic := svc + ".o"
			cfg := mq.Config{Service: svc, Ordered: []string{topic}, Prefetch: 2, Logger: quiet()}
			testenv.DropQueues(t, amqp.Queues(cfg)...)
			// One deadline for the whole subtest (declaring 16 shard queues
			// twice, quorum ones too): generous, against a hang only.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			first := amqp.NewProvider(url, opts...)
			require.NoError(t, first.Init(ctx, cfg))
			defer first.Close()
			deliveries, err := first.Consume(ctx)
			require.NoError(t, err)
			var sent []string
			for i := 0; i < 4; i++ {
				m := message.New(topic, []byte{byte(i)}, message.WithKey("k"))
				conf, err := first.Publish(ctx, m)
				require.NoError(t, err)
				require.NoError(t, conf.Wait(ctx))
				sent = append(sent, m.UUID)
			}
			m0 := (<-deliveries)
			got, err := m0.Message()
			require.NoError(t, err)
			require.Equal(t, sent[0], got.UUID)
			// The second is out to the provider too (Prefetch 2), not
			// handed out: two messages left ready in the shard.
			conn, err := amqp091.Dial(url)
			require.NoError(t, err)
			defer conn.Close()
			shard := amqp.Queues(cfg)[mq.Shard("k")]
			testenv.Eventually(t, 10*time.Second, func() bool {
				ch, err := conn.Channel()
				if err != nil {
					return false
				}
				defer ch.Close()
				q, err := ch.QueueDeclarePassive(shard, true, false, false, false, nil)
				return err == nil && q.Messages == 2
			}, "two messages out to the first instance")
			require.NoError(t, first.Close())

			second := amqp.NewProvider(url, opts...)
			require.NoError(t, second.Init(ctx, cfg))
			defer second.Close()
			deliveries, err = second.Consume(ctx)
			require.NoError(t, err)
			for i, want := range sent {
				select {
				case d := <-deliveries:
					got, err := d.Message()
					require.NoError(t, err)
					require.Equal(t, want, got.UUID, "delivery %d", i)
					require.NoError(t, d.Ack())
				case <-ctx.Done():
					t.Fatalf("delivery %d: %v", i, ctx.Err())
				}
			}
		})
	}
}
