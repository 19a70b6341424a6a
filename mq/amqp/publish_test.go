package amqp_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tap declares a private queue bound to topic on the "final" exchange.
func tap(t *testing.T, url, topic string) (*amqp091.Channel, string) {
	conn, err := amqp091.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("final", "direct", true, false, false, false, nil))
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, topic, "final", false, nil))
	return ch, q.Name
}

func publishWait(t *testing.T, p mq.IProvider, m *message.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conf, err := p.Publish(ctx, m)
	require.NoError(t, err)
	require.NoError(t, conf.Wait(ctx))
}

func TestPolicyMapsToAMQPProperties(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".props"
	ch, q := tap(t, url, topic)
	p := amqp.NewProvider(url)
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Logger: quiet()}))
	defer p.Close()

	durable := message.New(topic, []byte("d"))
	transient := message.New(topic, []byte("t"), message.WithDurable(false), message.WithTTL(90*time.Second))
	publishWait(t, p, durable)
	publishWait(t, p, transient)

	d, ok, err := ch.Get(q, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, amqp091.Persistent, d.DeliveryMode)
	require.Equal(t, durable.UUID, d.MessageId)
	require.Empty(t, d.Expiration)

	d, ok, err = ch.Get(q, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, amqp091.Transient, d.DeliveryMode)
	require.Equal(t, "90000", d.Expiration)
}

func TestTTLExpiresMessagesInTheQueue(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".ttl"
	ch, q := tap(t, url, topic)
	p := amqp.NewProvider(url)
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Logger: quiet()}))
	defer p.Close()

	publishWait(t, p, message.New(topic, []byte("short"), message.WithTTL(50*time.Millisecond)))
	publishWait(t, p, message.New(topic, []byte("long"), message.WithTTL(time.Hour)))
	// The short-lived message expires; the other stays.
	testenv.Eventually(t, 10*time.Second, func() bool {
		st, err := ch.QueueDeclarePassive(q, false, true, true, false, nil)
		return err == nil && st.Messages == 1
	}, "the expired message left the queue")
	d, ok, err := ch.Get(q, true)
	require.NoError(t, err)
	require.True(t, ok)
	m, err := message.Unmarshal(d.Body)
	require.NoError(t, err)
	require.Equal(t, "long", string(m.Payload))
}

// Cut the link five times: each time publishing reports ErrUnavailable (or
// an unconfirmed publish) instead of hanging, and after the link returns
// publishing and consuming resume on the same Consume channel. TestMain's
// goleak check proves the reconnects leave no goroutine behind.
func TestReconnectsAfterLinkCuts(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".t"
	proxy, err := faultnet.NewProxy(testenv.Hostport(url))
	require.NoError(t, err)
	defer proxy.Close()
	p := amqp.NewProvider("amqp://guest:guest@"+proxy.Addr()+"/", amqp.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond))
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Topics: []string{topic}, Prefetch: 8, Logger: quiet()}))
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deliveries, err := p.Consume(ctx)
	require.NoError(t, err)

	for cut := 0; cut < 5; cut++ {
		proxy.Cut()
		testenv.Eventually(t, 10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conf, err := p.Publish(ctx, message.New(topic, []byte("during-cut")))
			if err != nil {
				return errors.Is(err, mq.ErrUnavailable)
			}
			return conf.Wait(ctx) != nil
		}, "publishing notices the cut")
		proxy.Restore()

		want := message.New(topic, []byte("after-cut"))
		testenv.Eventually(t, 10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conf, err := p.Publish(ctx, want)
			return err == nil && conf.Wait(ctx) == nil
		}, "publishing resumes after cut %d", cut)
		deadline := time.After(10 * time.Second)
		for got := false; !got; {
			select {
			case d := <-deliveries:
				m, err := d.Message()
				require.NoError(t, err)
				require.NoError(t, d.Ack())
				got = m.UUID == want.UUID
			case <-deadline:
				t.Fatalf("consumer did not resume after cut %d", cut)
			}
		}
	}
}

// A publish that must follow one left unconfirmed on a lost connection is
// refused, so it cannot overtake it; one that follows a confirmed publish,
// or a publish on the same connection, goes out.
func TestPublishAfterRefusesToOvertakeAcrossReconnect(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".t"
	_, _ = tap(t, url, topic)
	proxy, err := faultnet.NewProxy(testenv.Hostport(url))
	require.NoError(t, err)
	defer proxy.Close()
	p := amqp.NewProvider("amqp://guest:guest@"+proxy.Addr()+"/", amqp.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Logger: quiet()}))
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publishAfter := func(prev mq.Confirmation) (mq.Confirmation, error) {
		m := message.New(topic, []byte("x"))
		body, err := message.Marshal(m)
		require.NoError(t, err)
		return p.PublishEncodedAfter(ctx, prev, m, body)
	}
	waitReady := func() {
		select {
		case <-p.Ready():
		case <-ctx.Done():
			t.Fatal("no reconnect")
		}
	}

	// Same connection: follows even while unconfirmed.
	first, err := publishAfter(nil)
	require.NoError(t, err)
	second, err := publishAfter(first)
	require.NoError(t, err)
	require.NoError(t, second.Wait(ctx))

	// A confirmed publish on a connection since replaced can be followed.
	proxy.Cut()
	testenv.Eventually(t, 10*time.Second, func() bool {
		select {
		case <-p.Ready():
			return false
		default:
			return true
		}
	}, "the provider notices the cut")
	proxy.Restore()
	waitReady()
	_, err = publishAfter(second)
	require.NoError(t, err, "after a confirmed publish")

	// An unconfirmed one lost with its connection cannot: publish right
	// after cutting the link, before the provider notices, until one such
	// publish is accepted locally and then fails.
	var lost mq.Confirmation
	testenv.Eventually(t, 30*time.Second, func() bool {
		waitReady()
		proxy.Cut()
		conf, err := publishAfter(nil)
		failed := err == nil && conf.Wait(ctx) != nil
		proxy.Restore()
		if failed {
			lost = conf
		}
		return failed
	}, "a publish lost with its connection")
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, err = publishAfter(lost)
		return !errors.Is(err, mq.ErrUnavailable) // reconnected
	}, "reconnect")
	require.ErrorIs(t, err, mq.ErrOutOfOrder)
}
