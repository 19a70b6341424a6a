package final_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/interop"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
)

// handled keeps the messages a handler got, by payload.
type handled struct {
	mu   sync.Mutex
	msgs map[string]*message.Message
	n    map[string]int
}

func newHandled() *handled {
	return &handled{msgs: map[string]*message.Message{}, n: map[string]int{}}
}

func (h *handled) handle(c *final.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs[string(c.Message.Payload)] = c.Message
	h.n[string(c.Message.Payload)]++
	return nil
}

func (h *handled) get(payload string) (*message.Message, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msgs[payload], h.n[payload]
}

func (h *handled) wait(t *testing.T, payloads ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, p := range payloads {
			if _, n := h.get(p); n == 0 {
				return false
			}
		}
		return true
	}, "handled %v", payloads)
}

// observe binds a queue of the test's own to every routing key of topic
// and returns its deliveries: what a consumer in another language sees.
func observe(t *testing.T, e *env, topic string) <-chan amqp091.Delivery {
	ch := e.channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	keys := []string{topic}
	for i := range mq.OrderShards {
		keys = append(keys, mq.ShardRoutingKey(topic, i))
	}
	for _, k := range keys {
		require.NoError(t, ch.QueueBind(q.Name, k, "final", false, nil))
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	require.NoError(t, err)
	return ds
}

// In the CloudEvents format every way a message leaves (the fast path
// after a commit, the relay for a transaction committed directly, a
// publish outside a transaction, a row an earlier version stored in the
// envelope format) reaches the broker with the payload as its body and
// the metadata as CloudEvents headers; a final subscriber gets the message
// whole.
func TestCloudEventsOnTheWire(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".created"
	seen := observe(t, e, topic)

	// A row an earlier version left in the outbox.
	store, err := mysql.New(e.db, "final_"+e.svc+"_outbox", mysql.Options{})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(context.Background()))
	old := message.New(topic, []byte("old"))
	old.Time = time.Time{} // as an earlier version stored it
	old.Header.Set("tenant", "acme")
	body, err := message.Marshal(old)
	require.NoError(t, err)
	_, err = store.Insert(context.Background(), nil, outbox.Row{Body: body})
	require.NoError(t, err)

	got := newHandled()
	b := e.start(e.svc, e.url, testOptions(t).WithWireFormat(mq.CloudEvents), func(b *final.Bus) {
		b.Subscribe(topic).Handler(got.handle)
	})
	sent := map[string]*message.Message{"old": old}
	newMsg := func(payload string, opts ...message.PolicyOption) *message.Message {
		m := message.New(topic, []byte(payload), append(opts, message.WithContentType("text/plain"))...)
		m.Header.Set("tenant", "acme")
		m.Header.Set("attempt", 3)
		sent[payload] = m
		return m
	}
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
		if err := txBus.PublishMessage(newMsg("fast", message.WithKey("k1"))); err != nil {
			return err
		}
		return txBus.PublishMessage(newMsg("fast-unkeyed"))
	}))
	tx, err = e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.WithTx(tx).PublishMessage(newMsg("relay")))
	require.NoError(t, tx.Commit())
	require.NoError(t, b.PublishMessage(newMsg("outside")))
	require.NoError(t, b.PublishSync(context.Background(), newMsg("sync")))

	wire := map[string]amqp091.Delivery{}
	timeout := time.After(30 * time.Second)
	for len(wire) < len(sent) {
		select {
		case d := <-seen:
			wire[string(d.Body)] = d
		case <-timeout:
			t.Fatalf("saw %d of %d messages on the wire", len(wire), len(sent))
		}
	}
	for payload, m := range sent {
		d, ok := wire[payload]
		require.True(t, ok, "%s: the body is not the payload", payload)
		h := d.Headers
		require.Equal(t, "1.0", h["cloudEvents:specversion"], payload)
		require.Equal(t, m.UUID, h["cloudEvents:id"], payload)
		require.Equal(t, m.UUID, d.MessageId, payload)
		require.Equal(t, topic, h["cloudEvents:type"], payload)
		require.Equal(t, e.svc, h["cloudEvents:source"], payload)
		require.Equal(t, "acme", h["tenant"], payload)
		ts, err := time.Parse(time.RFC3339Nano, h["cloudEvents:time"].(string))
		require.NoError(t, err, payload)
		if !m.Time.IsZero() {
			require.True(t, ts.Equal(m.Time), "%s: time %v, want %v", payload, ts, m.Time)
		}
		if payload != "old" {
			require.Equal(t, "text/plain", d.ContentType, payload)
			require.Equal(t, int64(3), h["attempt"], payload)
		}
		if m.Key != "" {
			require.Equal(t, m.Key, h["cloudEvents:partitionkey"], payload)
		}
		for k := range h {
			require.NotContains(t, []string{"Policy", "policy"}, k)
		}
	}

	got.wait(t, "old", "fast", "fast-unkeyed", "relay", "outside", "sync")
	for payload, m := range sent {
		r, _ := got.get(payload)
		require.Equal(t, m.UUID, r.UUID, payload)
		require.Equal(t, m.Key, r.Key, payload)
		require.Equal(t, e.svc, r.Source, payload)
		require.Equal(t, "acme", r.Header.GetString("tenant"), payload)
		require.True(t, bytes.Equal(m.Payload, r.Payload), payload)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty")
}

// Consumers read both formats: producers on either setting reach the same
// subscriber, and an event from a producer that is not final (here raw
// AMQP with the later binding's cloudEvents_ prefix) is handled, its
// duplicate kept out by the inbox.
func TestConsumersReadBothFormats(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".paid"
	got := newHandled()
	// One worker: the queue is handled in order, so "after" is handled
	// after the duplicate.
	e.start(e.svc, e.url, testOptions(t).WithNumSubscriber(1), func(b *final.Bus) {
		b.Subscribe(topic).Inbox().Handler(got.handle)
	})
	envelope := e.start(e.service(), e.url, testOptions(t), nil)
	events := e.start(e.service(), e.url, testOptions(t).WithWireFormat(mq.CloudEvents), nil)
	require.NoError(t, envelope.Publish(topic, []byte("from-envelope")))
	require.NoError(t, events.Publish(topic, []byte("from-cloudevents")))

	ch := e.channel()
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 2))
	foreign := amqp091.Publishing{
		ContentType: "application/json",
		Body:        []byte(`{"foreign":true}`),
		Headers: amqp091.Table{
			"cloudEvents_specversion": "1.0", "cloudEvents_id": "foreign-1", "cloudEvents_source": "https://billing.example.com",
			"cloudEvents_type": topic, "cloudEvents_time": "2026-11-30T12:00:00Z", "region": "eu",
		},
	}
	for range 2 { // the same event twice: the inbox handles it once
		require.NoError(t, ch.PublishWithContext(context.Background(), "final", topic, true, false, foreign))
		require.True(t, (<-confirms).Ack)
	}
	require.NoError(t, events.Publish(topic, []byte("after"))) // handled after the duplicate
	got.wait(t, "from-envelope", "from-cloudevents", `{"foreign":true}`, "after")

	m, n := got.get(`{"foreign":true}`)
	require.Equal(t, 1, n, "the duplicate event was handled again")
	require.Equal(t, "foreign-1", m.UUID)
	require.Equal(t, "https://billing.example.com", m.Source)
	require.Equal(t, "application/json", m.ContentType)
	require.Equal(t, "eu", m.Header.GetString("region"))
	require.Equal(t, 2026, m.Time.Year())
	env, _ := got.get("from-envelope")
	require.Empty(t, env.Source, "the envelope has no source")
	ce, _ := got.get("from-cloudevents")
	require.NotEmpty(t, ce.Source)
}

// In the CloudEvents format a header that cannot travel as a transport
// header is refused at Publish, before anything is stored.
func TestCloudEventsRefuseAHeaderTheTransportCannotCarry(t *testing.T) {
	e := newEnv(t)
	b := e.start(e.svc, e.url, testOptions(t).WithWireFormat(mq.CloudEvents), nil)
	m := message.New(e.svc+".t", []byte("x"))
	m.Header.Set("when", time.Now())
	require.ErrorIs(t, b.PublishMessage(m), final.ErrInvalidHeader)
	m = message.New(e.svc+".t", []byte("x"))
	m.Header.Set("cloudEvents:id", "spoofed")
	require.ErrorIs(t, b.PublishMessage(m), final.ErrInvalidHeader)
	require.Zero(t, e.outboxRows())
}

// The trace context of the publishing context travels with the message:
// as the CloudEvents distributed tracing attributes and as plain headers,
// and in the subscriber's Header; the caller's message is not changed.
func TestTraceContextTravels(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".traced"
	seen := observe(t, e, topic)
	got := newHandled()
	b := e.start(e.svc, e.url, testOptions(t).WithWireFormat(mq.CloudEvents), func(b *final.Bus) {
		b.Subscribe(topic).Handler(got.handle)
	})
	ts, err := trace.ParseTraceState("vendor=abc")
	require.NoError(t, err)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:     trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	const want = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	m := message.New(topic, []byte("traced"))
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.TransactionContext(ctx, tx, func(txBus *final.TxBus) error { return txBus.PublishMessage(m) }))
	require.NotContains(t, m.Header, "traceparent", "the caller's header was changed")

	select {
	case d := <-seen:
		require.Equal(t, want, d.Headers["cloudEvents:traceparent"])
		require.Equal(t, "vendor=abc", d.Headers["cloudEvents:tracestate"])
		require.Equal(t, want, d.Headers["traceparent"])
	case <-time.After(30 * time.Second):
		t.Fatal("nothing on the wire")
	}
	got.wait(t, "traced")
	r, _ := got.get("traced")
	require.Equal(t, want, r.Header.GetString("traceparent"))
	require.Equal(t, "vendor=abc", r.Header.GetString("tracestate"))
}

// An event published twice by a client in another language (Node.js with
// amqplib alone) is handled once by an Inbox subscription, its Context
// filled from the CloudEvents attributes.
func TestInboxHandlesANodeEventOnce(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".paid"
	got := newHandled()
	var (
		mu   sync.Mutex
		ctxs [][2]string // topic, key
	)
	b := e.start(e.svc, e.url, testOptions(t).WithNumSubscriber(1), func(b *final.Bus) {
		b.Subscribe(topic).Inbox().Handler(func(c *final.Context) error {
			mu.Lock()
			ctxs = append(ctxs, [2]string{c.Topic, c.Key})
			mu.Unlock()
			return got.handle(c)
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	event := map[string]string{
		"cloudEvents:specversion": "1.0", "cloudEvents:id": "node-" + e.svc, "cloudEvents:source": "https://billing.example.com",
		"cloudEvents:type": topic, "cloudEvents:time": "2026-11-30T12:00:00Z", "cloudEvents:partitionkey": "order-7", "region": "eu",
	}
	for range 2 {
		interop.Publish(ctx, t, e.url, topic, `{"paid":true}`, "application/json", event)
	}
	require.NoError(t, b.Publish(topic, []byte("after"))) // handled after both copies (one worker)
	got.wait(t, "after")

	m, n := got.get(`{"paid":true}`)
	require.Equal(t, 1, n, "the second copy was handled again")
	require.Equal(t, "node-"+e.svc, m.UUID)
	require.Equal(t, "https://billing.example.com", m.Source)
	require.Equal(t, "application/json", m.ContentType)
	require.Equal(t, "order-7", m.Key)
	require.Equal(t, "eu", m.Header.GetString("region"))
	require.True(t, m.Time.Equal(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, [2]string{topic, "order-7"}, ctxs[0])
}

// A typed value published in the CloudEvents format travels with its
// codec as the content type (no header the format refuses) and decodes.
func TestPublishValueInCloudEvents(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".typed"
	seen := observe(t, e, topic)
	type order struct{ ID string }
	got := make(chan order, 1)
	b := e.start(e.svc, e.url, testOptions(t).WithWireFormat(mq.CloudEvents), func(b *final.Bus) {
		b.Subscribe(topic).Handler(final.Typed(final.JSONCodec, func(_ context.Context, o order) error {
			got <- o
			return nil
		}))
	})
	require.NoError(t, final.PublishValue(context.Background(), b, final.JSONCodec, topic, order{ID: "o-1"}))
	select {
	case d := <-seen:
		require.Equal(t, "application/json", d.ContentType)
		require.JSONEq(t, `{"ID":"o-1"}`, string(d.Body))
	case <-time.After(30 * time.Second):
		t.Fatal("nothing on the wire")
	}
	select {
	case o := <-got:
		require.Equal(t, "o-1", o.ID)
	case <-time.After(30 * time.Second):
		t.Fatal("not handled")
	}
}
