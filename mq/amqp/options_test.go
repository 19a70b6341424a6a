package amqp_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// WithExchange routes through the named exchange, and only through it.
func TestWithExchangeRoutesThroughIt(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".t"
	exchange := "final_x_" + svc
	defaultTap, tapQueue := tap(t, url, topic) // bound on the default exchange "final"
	t.Cleanup(func() { _ = defaultTap.ExchangeDelete(exchange, false, false) })

	p := amqp.NewProvider(url, amqp.WithExchange(exchange))
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Topics: []string{topic}, Prefetch: 4, Logger: quiet()}))
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deliveries, err := p.Consume(ctx)
	require.NoError(t, err)

	m := message.New(topic, []byte("via custom exchange"))
	publishWait(t, p, m)
	select {
	case d := <-deliveries:
		got, err := d.Message()
		require.NoError(t, err)
		require.Equal(t, m.UUID, got.UUID)
		require.NoError(t, d.Ack())
	case <-ctx.Done():
		t.Fatal("no delivery through the custom exchange")
	}
	require.NoError(t, defaultTap.ExchangeDeclarePassive(exchange, "direct", true, false, false, false, nil), "the custom exchange exists")
	q, err := defaultTap.QueueDeclarePassive(tapQueue, false, true, true, false, nil)
	require.NoError(t, err)
	require.Zero(t, q.Messages, "nothing went through the default exchange")
}

// WithHeartbeat is what the connection negotiates with the broker.
func TestWithHeartbeatIsNegotiated(t *testing.T) {
	url := testenv.AMQP(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		testenv.Unavailable(t, "rabbitmqctl: %v", err)
	}
	svc := testenv.Service(t, nil)
	p := amqp.NewProvider(url, amqp.WithHeartbeat(7*time.Second))
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Logger: quiet()}))
	defer p.Close()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "client_properties", "timeout").CombinedOutput()
	require.NoError(t, err, "%s", out)
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "final."+svc+".publish") {
			found = true
			fields := strings.Fields(line)
			require.Equal(t, "7", fields[len(fields)-1], "negotiated heartbeat in %q", line)
		}
	}
	require.True(t, found, "connection final.%s.publish not listed:\n%s", svc, out)
}
