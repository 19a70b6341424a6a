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
