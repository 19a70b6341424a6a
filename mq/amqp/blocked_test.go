package amqp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// While RabbitMQ blocks the publishing connection during a resource alarm,
// a publish fails at once, wrapping ErrBlocked and mq.ErrUnavailable,
// instead of waiting unconfirmed for the alarm to clear; Close does not
// hang on the blocked connection; once the alarm clears, publishes go
// through again. The alarm is raised on the test's own node.
func TestPublishFailsFastWhileTheBrokerBlocksTheConnection(t *testing.T) {
	url := testenv.AlarmNode(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".alarm"
	t.Cleanup(func() { deleteQueues(url, "final."+svc, "final."+svc+".dlq") })
	p := amqp.NewProvider(url)
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Topics: []string{topic}, Logger: quiet()}))
	defer p.Close()
	other := amqp.NewProvider(url)
	require.NoError(t, other.Init(context.Background(), mq.Config{Service: svc, Logger: quiet()}))
	defer other.Close()
	publishWait(t, p, message.New(topic, []byte("before")))

	clear := testenv.MemoryAlarm(t)
	blocked := func(p *amqp.Provider) {
		t.Helper()
		var last error
		defer func() {
			if t.Failed() {
				t.Logf("last publish: %v", last)
			}
		}()
		// RabbitMQ blocks a connection once it publishes during the alarm:
		// the first publishes wait unconfirmed for the notice.
		testenv.Eventually(t, 30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			conf, err := p.Publish(ctx, message.New(topic, []byte("during")))
			if err != nil {
				last = err
				return errors.Is(err, amqp.ErrBlocked)
			}
			last = conf.Wait(ctx)
			return false
		}, "a publish refused with ErrBlocked")
		require.ErrorIs(t, last, mq.ErrUnavailable)
		t.Logf("refused: %v", last)
	}
	blocked(p)
	blocked(other)

	closed := make(chan struct{})
	go func() { _ = other.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close hung on the blocked connection")
	}

	clear()
	testenv.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conf, err := p.Publish(ctx, message.New(topic, []byte("after")))
		return err == nil && conf.Wait(ctx) == nil
	}, "a publish confirmed after the alarm cleared")
}

// deleteQueues deletes queues on the broker at url, as far as it answers.
func deleteQueues(url string, names ...string) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		for _, q := range names {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	}
}
