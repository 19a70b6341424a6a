package amqp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/interop"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// The interop tests run a consumer and a publisher written in Node.js with
// nothing but its AMQP client, amqplib (internal/interop/node), against
// the provider: a message in the CloudEvents format is read whole by
// another language, and an event another language publishes is read whole
// by final.

// nodeDelivery is what consume.js prints of a message.
type nodeDelivery struct {
	Body        string         `json:"body"`
	MessageID   string         `json:"message_id"`
	ContentType string         `json:"content_type"`
	Headers     map[string]any `json:"headers"`
}

func TestNodeReadsACloudEvent(t *testing.T) {
	dir := interop.NodeDir(t)
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".created"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := mq.Config{Service: svc, WireFormat: mq.CloudEvents, Logger: quiet()}
	testenv.DropQueues(t, amqp.Queues(cfg)...)
	p := amqp.NewProvider(url)
	require.NoError(t, p.Init(ctx, cfg))
	defer p.Close()

	consumer := interop.Node(ctx, dir, url, "consume.js", "--count", "1", "--timeout", "15", topic)
	var stderr bytes.Buffer
	consumer.Stderr = &stderr
	stdout, err := consumer.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, consumer.Start())
	waited := false
	defer func() {
		if !waited {
			cancel()
			_ = consumer.Wait()
		}
	}()
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "consume.js ended before READY: %s", &stderr)
	require.Equal(t, "READY", lines.Text())

	m := message.New(topic, []byte(`{"order":42}`), message.WithContentType("application/json"))
	m.Header.Set("tenant", "acme")
	conf, err := p.Publish(ctx, m)
	require.NoError(t, err)
	require.NoError(t, conf.Wait(ctx))

	require.True(t, lines.Scan(), "consume.js printed no message: %s", &stderr)
	line := lines.Text()
	t.Logf("node consume.js: %s", line)
	waited = true
	require.NoError(t, consumer.Wait(), "consume.js: %s", &stderr)

	var got nodeDelivery
	require.NoError(t, json.Unmarshal([]byte(line), &got))
	require.Equal(t, string(m.Payload), got.Body, "the body is the payload")
	require.Equal(t, m.UUID, got.MessageID)
	require.Equal(t, "application/json", got.ContentType)
	h := got.Headers
	require.Equal(t, "1.0", h["cloudEvents:specversion"])
	require.Equal(t, m.UUID, h["cloudEvents:id"])
	require.Equal(t, topic, h["cloudEvents:type"])
	require.Equal(t, svc, h["cloudEvents:source"])
	require.Equal(t, "acme", h["tenant"])
	ts, ok := h["cloudEvents:time"].(string)
	require.True(t, ok, "cloudEvents:time is a string: %#v", h["cloudEvents:time"])
	at, err := time.Parse(time.RFC3339Nano, ts)
	require.NoError(t, err)
	require.True(t, at.Equal(m.Time), "cloudEvents:time %v, want %v", at, m.Time)
}

func TestNodePublishesACloudEvent(t *testing.T) {
	interop.NodeDir(t)
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	topic := svc + ".paid"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := mq.Config{Service: svc, Topics: []string{topic}, WireFormat: mq.Envelope, Prefetch: 10, Logger: quiet()}
	testenv.DropQueues(t, amqp.Queues(cfg)...)
	p := amqp.NewProvider(url)
	require.NoError(t, p.Init(ctx, cfg))
	defer p.Close()
	deliveries, err := p.Consume(ctx)
	require.NoError(t, err)

	interop.Publish(ctx, t, url, topic, `{"paid":true}`, "application/json", map[string]string{
		"cloudEvents_specversion": "1.0",
		"cloudEvents_id":          "node-1",
		"cloudEvents_source":      "https://billing.example.com",
		"cloudEvents_type":        topic,
		"cloudEvents_time":        "2026-11-30T12:00:00Z",
		"region":                  "eu",
	})

	select {
	case d := <-deliveries:
		msg, err := d.Message()
		require.NoError(t, err)
		require.Equal(t, "node-1", msg.UUID)
		require.Equal(t, topic, msg.Topic)
		require.Equal(t, "https://billing.example.com", msg.Source)
		require.Equal(t, "application/json", msg.ContentType)
		require.Equal(t, []byte(`{"paid":true}`), msg.Payload)
		require.Equal(t, message.Header{"region": "eu"}, msg.Header, "the attributes are not headers")
		require.True(t, msg.Time.Equal(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)), "time %v", msg.Time)
		require.NoError(t, d.Ack())
	case <-ctx.Done():
		t.Fatal("no delivery of the event node published")
	}
}
