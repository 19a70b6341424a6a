package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// rawTopology declares, with amqp091-go alone, what the provider declares
// for a consuming service: the "final" exchange and a durable queue bound to
// topic. It returns the channel it used.
func rawTopology(conn *amqp091.Connection, queue, topic string) (*amqp091.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare("final", "direct", true, false, false, false, nil); err != nil {
		return nil, err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return nil, err
	}
	return ch, ch.QueueBind(queue, topic, "final", false, nil)
}

// rawConsume acks every delivery of queue on its own channel until stop.
func rawConsume(conn *amqp091.Connection, queue string, prefetch int, got *atomic.Int64, stop <-chan struct{}) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return err
	}
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	go func() {
		defer ch.Close()
		for {
			select {
			case d, ok := <-ds:
				if !ok {
					return
				}
				_ = d.Ack(false)
				got.Add(1)
			case <-stop:
				return
			}
		}
	}()
	return nil
}

// body is a library-encoded message of the configured payload size.
func (e *benchEnv) body(topic string, seq uint64) []byte {
	b, _ := message.Marshal(message.New(topic, e.payload(seq)))
	return b
}

// publishing is a message of the configured payload size as a producer in
// the configured wire format sends it.
func (e *benchEnv) publishing(topic string, seq uint64) amqp091.Publishing {
	if e.cfg.wire != mq.CloudEvents {
		return amqp091.Publishing{ContentType: mq.EnvelopeContentType, Body: e.body(topic, seq)}
	}
	m := message.New(topic, e.payload(seq))
	h := amqp091.Table{}
	mq.EventAttributes(m, "finalbench", time.Now(), func(name, value string) { h["cloudEvents:"+name] = value })
	return amqp091.Publishing{ContentType: "application/octet-stream", MessageId: m.UUID, Headers: h, Body: m.Payload}
}

// rawPublishTo publishes n persistent messages to topic on one confirming
// channel, keeping up to window confirms outstanding, and returns the time
// until the last confirm.
func rawPublishTo(conn *amqp091.Connection, topic string, n int, msg func(i int) amqp091.Publishing) (time.Duration, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	const window = 2048
	pending := make(chan *amqp091.DeferredConfirmation, window)
	failed := make(chan error, 1)
	go func() {
		defer close(failed)
		for dc := range pending {
			if !dc.Wait() {
				failed <- fmt.Errorf("raw publish nacked")
				for range pending {
				}
				return
			}
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		pub := msg(i)
		pub.DeliveryMode = amqp091.Persistent
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "final", topic, false, false, pub)
		if err != nil {
			close(pending)
			return 0, err
		}
		pending <- dc
	}
	close(pending)
	if err := <-failed; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

type rawPublishResult struct {
	confirmed float64 // messages per second until the last confirm
	consumed  float64 // messages per second until the consumer had them all
}

// rawPipe is a durable queue bound to its own topic on the "final"
// exchange, a raw consumer acking every delivery on its own connection, and
// a connection to publish on: the broker side of the raw limits.
type rawPipe struct {
	pub, cons    *amqp091.Connection
	topo         *amqp091.Channel
	queue, topic string
	got          atomic.Int64 // deliveries consumed
	stop         chan struct{}
}

// openRawPipe declares and purges queue (its topic has the same name) and
// starts consuming it.
func (e *benchEnv) openRawPipe(queue string) (*rawPipe, error) {
	p := &rawPipe{queue: queue, topic: queue, stop: make(chan struct{})}
	var err error
	if p.pub, err = amqp091.Dial(e.cfg.amqpURL); err != nil {
		return nil, err
	}
	if p.cons, err = amqp091.Dial(e.cfg.amqpURL); err != nil {
		_ = p.pub.Close()
		return nil, err
	}
	if p.topo, err = rawTopology(p.pub, queue, p.topic); err == nil {
		_, err = p.topo.QueuePurge(queue, false)
	}
	if err == nil {
		err = rawConsume(p.cons, queue, 32, &p.got, p.stop)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// close stops the consumer, deletes the queue and closes the connections.
func (p *rawPipe) close() {
	close(p.stop)
	if p.topo != nil {
		_, _ = p.topo.QueueDelete(p.queue, false, false, false)
	}
	_ = p.cons.Close()
	_ = p.pub.Close()
}

// rawPublish measures RabbitMQ's confirmed-publish rate for persistent
// messages into a durable queue that a raw consumer drains meanwhile, on
// its own connection as the provider does: the conditions of the library's
// backlog drain, without the library.
func (e *benchEnv) rawPublish(n int) (rawPublishResult, error) {
	pipe, err := e.openRawPipe("bench.rawmq")
	if err != nil {
		return rawPublishResult{}, err
	}
	defer pipe.close()
	conn, topic, got := pipe.pub, pipe.topic, &pipe.got
	body := e.body(topic, 0)
	start := time.Now()
	took, err := rawPublishTo(conn, topic, n, func(int) amqp091.Publishing {
		return amqp091.Publishing{ContentType: mq.EnvelopeContentType, Body: body}
	})
	if err != nil {
		return rawPublishResult{}, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for got.Load() < int64(n) {
		if time.Now().After(deadline) {
			return rawPublishResult{}, fmt.Errorf("raw consumer got %d of %d", got.Load(), n)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	return rawPublishResult{confirmed: float64(n) / took.Seconds(), consumed: float64(n) / time.Since(start).Seconds()}, nil
}

// consumers preloads a service queue with m library-encoded messages twice:
// once drained by a raw amqp091-go consumer acking each delivery, once by
// the library with a no-op handler. Both use prefetch 32.
func (e *benchEnv) consumers(m int) (raw, lib float64, err error) {
	conn, err := amqp091.Dial(e.cfg.amqpURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	svc := e.service("cons")
	queue, topic := "final."+svc, "bench."+svc
	if _, err := rawTopology(conn, queue, topic); err != nil {
		return 0, 0, err
	}
	preload := func() error {
		_, err := rawPublishTo(conn, topic, m, func(i int) amqp091.Publishing { return e.publishing(topic, uint64(i)) })
		return err
	}
	wait := func(got *atomic.Int64, start time.Time) (float64, error) {
		deadline := start.Add(5 * time.Minute)
		for got.Load() < int64(m) {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("consumer phase: %d of %d consumed", got.Load(), m)
			}
			time.Sleep(time.Millisecond) // polling interval
		}
		return float64(m) / time.Since(start).Seconds(), nil
	}

	if err := preload(); err != nil {
		return 0, 0, err
	}
	var rawGot atomic.Int64
	stop := make(chan struct{})
	start := time.Now()
	if err := rawConsume(conn, queue, 32, &rawGot, stop); err != nil {
		return 0, 0, err
	}
	raw, err = wait(&rawGot, start)
	close(stop)
	if err != nil {
		return 0, 0, err
	}

	if err := preload(); err != nil {
		return 0, 0, err
	}
	var libGot atomic.Int64
	bus := final.New(svc, e.db, amqp.NewProvider(e.cfg.amqpURL),
		e.options().WithPrefetch(32))
	bus.Subscribe(topic).Handler(func(*final.Context) error { libGot.Add(1); return nil })
	start = time.Now()
	if err := bus.Start(); err != nil {
		return 0, 0, err
	}
	defer bus.Shutdown()
	lib, err = wait(&libGot, start)
	return raw, lib, err
}
