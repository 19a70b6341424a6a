// Package mqtest is the conformance suite for mq.IProvider implementations,
// in the manner of testing/slogtest: every provider, the in-memory test
// double included, runs it from its own tests.
package mqtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Harness tells the suite how to make providers.
type Harness struct {
	// New returns a provider, not yet initialised, on the broker under test.
	New func(t *testing.T) mq.IProvider
	// Service returns a fresh service name; the harness removes what it
	// leaves on the broker when t ends.
	Service func(t *testing.T) string
	// Declared, if set, is called with the Config of every provider the
	// suite starts, before Init, for the harness to remove when t ends
	// what Init declares beyond what Service can name (mq/amqp: an Ordered
	// topic's shard queues). Optional: nil leaves it on the broker.
	Declared func(t *testing.T, cfg mq.Config)
}

const wait = 10 * time.Second

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run("Unroutable", func(t *testing.T) { testUnroutable(t, h) })
	t.Run("Requeue", func(t *testing.T) { testRequeue(t, h) })
	t.Run("DeadLetter", func(t *testing.T) { testDeadLetter(t, h) })
	t.Run("FanOutAndCompete", func(t *testing.T) { testFanOutAndCompete(t, h) })
	t.Run("BroadcastToSeveralInstances", func(t *testing.T) { testBroadcast(t, h) })
	t.Run("DeadLetterQueue", func(t *testing.T) { testDeadLetterQueue(t, h) })
	t.Run("ConsumeStops", func(t *testing.T) { testConsumeStops(t, h) })
	t.Run("Close", func(t *testing.T) { testClose(t, h) })
	t.Run("OrderedPublisher", func(t *testing.T) { testOrderedPublisher(t, h) })
	t.Run("ReplayScopeAcrossServices", func(t *testing.T) { testReplayScope(t, h) })
	t.Run("Reconcile", func(t *testing.T) { testReconcile(t, h) })
	t.Run("CloudEventsRoundTrip", func(t *testing.T) { testCloudEvents(t, h) })
	t.Run("OrderedAcrossConsumers", func(t *testing.T) { testOrderedAcrossConsumers(t, h) })
	t.Run("TakeoverAfterDeath", func(t *testing.T) { testTakeoverAfterDeath(t, h) })
}

func logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, h Harness, service string, topics ...string) mq.IProvider {
	t.Helper()
	return startConfig(t, h, mq.Config{Service: service, Topics: topics})
}

func startConfig(t *testing.T, h Harness, cfg mq.Config) mq.IProvider {
	t.Helper()
	cfg.Prefetch, cfg.Logger = 16, logger()
	if h.Declared != nil {
		h.Declared(t, cfg)
	}
	p := h.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Init(ctx, cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func consume(t *testing.T, p mq.IProvider) <-chan mq.Delivery {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := p.Consume(ctx)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	return ch
}

func publish(t *testing.T, p mq.IProvider, m *message.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conf, err := p.Publish(ctx, m)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := conf.Wait(ctx); err != nil {
		t.Fatalf("confirm: %v", err)
	}
}

func next(t *testing.T, ch <-chan mq.Delivery) (mq.Delivery, *message.Message) {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		m, err := d.Message()
		if err != nil {
			t.Fatalf("decode delivery: %v", err)
		}
		return d, m
	case <-time.After(wait):
		t.Fatal("no delivery within", wait)
	}
	return nil, nil
}

func testRoundTrip(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc, svc+".created")
	ch := consume(t, p)
	m := message.New(svc+".created", []byte("payload-1"), message.WithTTL(time.Minute))
	m.Key = "k1"
	m.Header.Set("trace", "abc")
	publish(t, p, m)
	d, got := next(t, ch)
	if got.UUID != m.UUID || got.Topic != m.Topic || got.Key != "k1" || string(got.Payload) != "payload-1" {
		t.Fatalf("got %+v, want %+v", got, m)
	}
	if got.Header.GetString("trace") != "abc" {
		t.Fatalf("header lost: %v", got.Header)
	}
	if d.Redelivered() {
		t.Fatal("first delivery marked redelivered")
	}
	if err := d.Ack(); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

func testUnroutable(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conf, err := p.Publish(ctx, message.New(svc+".nobody-listens", []byte("x")))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := conf.Wait(ctx); !errors.Is(err, mq.ErrUnroutable) {
		t.Fatalf("Wait = %v, want ErrUnroutable", err)
	}
}

func testRequeue(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc, svc+".t")
	ch := consume(t, p)
	m := message.New(svc+".t", []byte("again"))
	publish(t, p, m)
	d, _ := next(t, ch)
	if err := d.Requeue(); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	d2, got := next(t, ch)
	if got.UUID != m.UUID || !d2.Redelivered() {
		t.Fatalf("after requeue got %s redelivered=%v, want %s redelivered", got.UUID, d2.Redelivered(), m.UUID)
	}
	_ = d2.Ack()
}

func testDeadLetter(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc, svc+".t")
	ch := consume(t, p)
	m1 := message.New(svc+".t", []byte("poison"))
	publish(t, p, m1)
	d, _ := next(t, ch)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.DeadLetter(ctx, "test reason"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	m2 := message.New(svc+".t", []byte("next"))
	publish(t, p, m2)
	d2, got := next(t, ch)
	if got.UUID != m2.UUID {
		t.Fatalf("dead-lettered message came back: got %s, want %s", got.UUID, m2.UUID)
	}
	_ = d2.Ack()
}

func testFanOutAndCompete(t *testing.T, h Harness) {
	svcA, svcB := h.Service(t), h.Service(t)
	topic := svcA + ".shared"
	a1 := start(t, h, svcA, topic)
	a2 := start(t, h, svcA, topic)
	b := start(t, h, svcB, topic)
	chA1, chA2, chB := consume(t, a1), consume(t, a2), consume(t, b)

	const n = 40
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		m := message.New(topic, []byte{byte(i)})
		want[m.UUID] = true
		publish(t, b, m)
	}
	gotA, gotB := map[string]int{}, map[string]int{}
	deadline := time.After(wait)
	for len(gotA) < n || len(gotB) < n {
		var d mq.Delivery
		var into map[string]int
		select {
		case d = <-chA1:
			into = gotA
		case d = <-chA2:
			into = gotA
		case d = <-chB:
			into = gotB
		case <-deadline:
			t.Fatalf("service A got %d, service B got %d of %d", len(gotA), len(gotB), n)
		}
		m, err := d.Message()
		if err != nil {
			t.Fatal(err)
		}
		if !want[m.UUID] {
			t.Fatalf("unexpected message %s", m.UUID)
		}
		into[m.UUID]++
		_ = d.Ack()
	}
	for id, c := range gotA {
		if c != 1 {
			t.Fatalf("service A instances got %s %d times, want once between them", id, c)
		}
	}
}

// testDeadLetterQueue runs for providers with mq.DeadLetterQueue: a dead
// letter can be read, stays until replayed, and comes back to its topic.
func testDeadLetterQueue(t *testing.T, h Harness) {
	svc := h.Service(t)
	topic := svc + ".t"
	p := start(t, h, svc, topic)
	dlq, ok := p.(mq.DeadLetterQueue)
	if !ok {
		t.Skip("the provider has no mq.DeadLetterQueue")
	}
	ch := consume(t, p)
	m := message.New(topic, []byte("dead then alive"))
	publish(t, p, m)
	d, _ := next(t, ch)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.DeadLetter(ctx, "reason 1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // reading does not remove
		dls, err := dlq.PeekDeadLetters(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) != 1 || dls[0].Reason != "reason 1" || dls[0].Topic != topic {
			t.Fatalf("peek %d = %+v, want one dead letter of %s with its reason", i, dls, topic)
		}
	}
	n, err := dlq.ReplayDeadLetters(ctx, 10)
	if err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 1", n, err)
	}
	d2, got := next(t, ch)
	if got.UUID != m.UUID {
		t.Fatalf("replayed %s, want %s", got.UUID, m.UUID)
	}
	_ = d2.Ack()
	if dls, err := dlq.PeekDeadLetters(ctx, 10); err != nil || len(dls) != 0 {
		t.Fatalf("after replay: %+v, %v; want an empty dead-letter queue", dls, err)
	}
}

func testConsumeStops(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc, svc+".t")
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := p.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(wait):
		t.Fatal("delivery channel not closed after its context was cancelled")
	}
}

func testClose(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc, svc+".t")
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Publish(context.Background(), message.New(svc+".t", nil)); !errors.Is(err, mq.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
}

type foreignConfirmation struct{}

func (foreignConfirmation) Wait(context.Context) error { return nil }

// testOrderedPublisher: publishes after an earlier one on a live connection
// go out, in order; a confirmation the provider knows nothing about cannot
// be followed. (The lost-connection case needs a link to cut; the bus's
// tests cover it against RabbitMQ.)
func testOrderedPublisher(t *testing.T, h Harness) {
	svc := h.Service(t)
	p := start(t, h, svc, svc+".seq")
	op, ok := p.(mq.OrderedPublisher)
	if !ok {
		t.Skip("provider does not implement mq.OrderedPublisher")
	}
	ch := consume(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var (
		prev mq.Confirmation
		sent []string
	)
	for i := 0; i < 20; i++ {
		m := message.New(svc+".seq", []byte{byte(i)})
		body, err := message.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		conf, err := op.PublishEncodedAfter(ctx, prev, m, body)
		if err != nil {
			t.Fatalf("PublishEncodedAfter #%d: %v", i, err)
		}
		prev = conf
		sent = append(sent, m.UUID)
	}
	if err := prev.Wait(ctx); err != nil {
		t.Fatalf("last confirm: %v", err)
	}
	for i, want := range sent {
		d, got := next(t, ch)
		if got.UUID != want {
			t.Fatalf("delivery %d is %s, want %s", i, got.UUID, want)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	m := message.New(svc+".seq", []byte("x"))
	body, _ := message.Marshal(m)
	if _, err := op.PublishEncodedAfter(ctx, foreignConfirmation{}, m, body); !errors.Is(err, mq.ErrOutOfOrder) {
		t.Fatalf("after a foreign confirmation: err %v, want mq.ErrOutOfOrder", err)
	}
}

// testReconcile runs for providers with mq.Reconciler: a service restarted
// with other subscriptions receives nothing for the topics it dropped, and
// a topic turned from Ordered to plain arrives once.
func testReconcile(t *testing.T, h Harness) {
	svc := h.Service(t)
	keep, drop, reorder := svc+".keep", svc+".drop", svc+".reorder"
	prev := mq.Config{Service: svc, Topics: []string{keep, drop}, Ordered: []string{reorder}}
	first := startConfig(t, h, prev)
	if _, ok := first.(mq.Reconciler); !ok {
		t.Skip("the provider has no mq.Reconciler")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	p := startConfig(t, h, mq.Config{Service: svc, Topics: []string{keep, reorder}})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	left, err := p.(mq.Reconciler).Reconcile(ctx, prev.Subscriptions())
	if err != nil || !left.Empty() {
		t.Fatalf("Reconcile = %+v, %v; want nothing left", left, err)
	}
	if _, err := p.(mq.Reconciler).Reconcile(ctx, prev.Subscriptions()); err != nil {
		t.Fatalf("Reconcile again: %v; want it idempotent", err)
	}
	conf, err := p.Publish(ctx, message.New(drop, []byte("dropped")))
	if err == nil {
		err = conf.Wait(ctx)
	}
	if !errors.Is(err, mq.ErrUnroutable) {
		t.Fatalf("publish to a dropped topic: %v, want mq.ErrUnroutable", err)
	}
	ch := consume(t, p)
	m := message.New(reorder, []byte("keyed"))
	m.Key = "k"
	publish(t, p, m)
	d, got := next(t, ch)
	if got.UUID != m.UUID {
		t.Fatalf("got %s, want %s", got.UUID, m.UUID)
	}
	_ = d.Ack()
	sentinel := message.New(keep, []byte("sentinel"))
	publish(t, p, sentinel)
	if d, got := next(t, ch); got.UUID != sentinel.UUID {
		t.Fatalf("got %s (%q), want the sentinel: a topic turned from Ordered to plain arrived twice", got.UUID, got.Payload)
	} else {
		_ = d.Ack()
	}
}

// A producer in the CloudEvents wire format reaches a consumer with its
// message whole (id, topic, key, header, payload, content type, time, its
// service as the source), without its policy, also after a dead letter is
// read and replayed.
func testCloudEvents(t *testing.T, h Harness) {
	svc, producer := h.Service(t), h.Service(t)
	topic := svc + ".t"
	p := start(t, h, svc, topic)
	pub := startConfig(t, h, mq.Config{Service: producer, WireFormat: mq.CloudEvents})
	ch := consume(t, p)
	m := message.New(topic, []byte{0, 0xff, '{'}, message.WithKey("k1"), message.WithContentType("application/octet-stream"), message.WithTTL(time.Hour))
	m.Header.Set("tenant", "acme")
	publish(t, pub, m)
	check := func(what string, got *message.Message) {
		t.Helper()
		if got.UUID != m.UUID || got.Topic != topic || got.Key != "k1" || string(got.Payload) != string(m.Payload) ||
			got.ContentType != m.ContentType || got.Source != producer || !got.Time.Equal(m.Time) {
			t.Fatalf("%s: got %+v, want the fields of %+v from %s", what, got, m, producer)
		}
		if got.Header.GetString("tenant") != "acme" {
			t.Fatalf("%s: header %v", what, got.Header)
		}
		if got.Policy == nil || got.Policy.TTL != 0 {
			t.Fatalf("%s: the producer's policy travelled: %+v", what, got.Policy)
		}
	}
	d, got := next(t, ch)
	check("delivered", got)
	dlq, ok := p.(mq.DeadLetterQueue)
	if !ok {
		_ = d.Ack()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.DeadLetter(ctx, "to see it again"); err != nil {
		t.Fatal(err)
	}
	dls, err := dlq.PeekDeadLetters(ctx, 10)
	if err != nil || len(dls) != 1 || dls[0].Err != nil || dls[0].Message == nil {
		t.Fatalf("PeekDeadLetters = %+v, %v; want the dead letter decoded", dls, err)
	}
	check("dead letter", dls[0].Message)
	if n, err := dlq.ReplayDeadLetters(ctx, 10); err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 1", n, err)
	}
	d, got = next(t, ch)
	check("replayed", got)
	_ = d.Ack()
}
