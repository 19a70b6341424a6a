package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/internal/coalesce"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// rabbitMQ is the broker of -broker rabbitmq: the raw side with
// amqp091-go alone, the library's with mq/amqp.
type rabbitMQ struct {
	addr string
	// coalesce: the raw pipe's publishing connection coalesces its writes
	// (internal/coalesce), as the library's does, instead of amqp091-go's
	// one write per publish (-raw-coalesce).
	coalesce bool
	// ackBatch is the library's amqp.WithAckBatch (-ack-batch); nil: its
	// default. (Not a slice of options: a broker stays comparable.)
	ackBatch *int
}

// dial opens a raw connection, its writes coalesced with coalesced.
func (b rabbitMQ) dial(coalesced bool) (*amqp091.Connection, error) {
	if !coalesced {
		return amqp091.Dial(b.addr)
	}
	dial := amqp091.DefaultDial(30 * time.Second) // amqp091.Dial's
	return amqp091.DialConfig(b.addr, amqp091.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			conn, err := dial(network, addr)
			if err != nil {
				return nil, err
			}
			return coalesce.New(conn), nil
		},
	})
}

func (rabbitMQ) name() string { return "RabbitMQ" }

func (b rabbitMQ) version() string {
	conn, err := amqp091.Dial(b.addr)
	if err != nil {
		return "RabbitMQ unknown"
	}
	defer conn.Close()
	return fmt.Sprint("RabbitMQ ", conn.Properties["version"])
}

func (b rabbitMQ) settings(s rawSettings) string {
	writes := "one write per publish (amqp091-go's own)"
	if b.coalesce {
		writes = "publishes' writes coalesced as the library's are"
	}
	return fmt.Sprintf("amqp091-go, "+writes+", persistent and mandatory, deferred confirms, up to %d outstanding per channel on %s of one connection; "+
		"consumer prefetch %d, acks in batches (one multiple ack per %d deliveries, or after %s) (%s)", s.Window, plural(s.Publishers, "publishing channel"), s.Prefetch, ackEvery(s.Prefetch), ackLinger, s)
}

func (b rabbitMQ) url() string { return b.addr }

// options are the library's provider options the flags set.
func (b rabbitMQ) options() []amqp.Option {
	if b.ackBatch == nil {
		return nil
	}
	return []amqp.Option{amqp.WithAckBatch(*b.ackBatch)}
}

func (b rabbitMQ) provider(url string) mq.IProvider { return amqp.NewProvider(url, b.options()...) }

func (b rabbitMQ) gatedProvider(url string, g *faultnet.Gate) mq.IProvider {
	return amqp.NewProvider(url, append(b.options(), amqp.WithDialer(g.DialContext))...)
}

func (b rabbitMQ) cleanup(services []string) {
	conn, err := amqp091.Dial(b.addr)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, svc := range services {
		_, _ = ch.QueueDelete("final."+svc, false, false, false)
		_, _ = ch.QueueDelete("final."+svc+".dlq", false, false, false)
	}
}

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

// ackEvery is how many deliveries the raw consumer acknowledges with one
// multiple ack: half its prefetch, so the broker never waits for an ack to
// send more. One ack per delivery halved a raw consumer's rate on this
// machine (RabbitMQ spends its CPU on the ack frames): a limit is the best
// the broker allows.
func ackEvery(prefetch int) int { return max(1, prefetch/2) }

// ackLinger bounds how long a delivery waits for its batch's ack when no
// more come.
const ackLinger = time.Millisecond

// rawConsume acknowledges the deliveries of queue on its own channel, in
// batches, until stop.
func rawConsume(conn *amqp091.Connection, queue string, prefetch int, got *rawCounter, stop <-chan struct{}) (done <-chan struct{}, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, err
	}
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	closed := make(chan struct{})
	every := ackEvery(prefetch)
	go func() {
		defer close(closed)
		defer ch.Close()
		t := time.NewTicker(ackLinger)
		defer t.Stop()
		var last uint64 // the latest delivery not acknowledged yet (0: none)
		pending := 0
		for {
			select {
			case d, ok := <-ds:
				if !ok {
					return
				}
				got.delivered(d.MessageId)
				last, pending = d.DeliveryTag, pending+1
				if pending >= every {
					_ = ch.Ack(last, true)
					last, pending = 0, 0
				}
			case <-t.C:
				if last != 0 {
					_ = ch.Ack(last, true)
					last, pending = 0, 0
				}
			case <-stop:
				if last != 0 {
					_ = ch.Ack(last, true)
				}
				return
			}
		}
	}()
	return closed, nil
}

// amqpPipe is a durable queue bound to a topic on the "final" exchange,
// confirming channels on one connection and raw consumers on another.
type amqpPipe struct {
	pub, cons    *amqp091.Connection
	topo         *amqp091.Channel
	pubs         []rawPublisher // an amqpPublisher each
	queue, topic string
	own          bool // the queue is the pipe's: close deletes it
	s            rawSettings
}

// amqpPublisher publishes on a confirming channel of its own.
type amqpPublisher struct {
	ch    *amqp091.Channel
	topic string
}

var errNacked = errors.New("raw publish nacked")

func (b rabbitMQ) pipe(topic string, s rawSettings) (rawPipe, error) {
	return b.open(topic, topic, true, s)
}

func (b rabbitMQ) servicePipe(svc, topic string, s rawSettings) (rawPipe, error) {
	return b.open("final."+svc, topic, false, s)
}

// open declares queue bound to topic (purged when it is the pipe's own)
// and opens the connections and s.Publishers confirming channels.
func (b rabbitMQ) open(queue, topic string, own bool, s rawSettings) (*amqpPipe, error) {
	p := &amqpPipe{queue: queue, topic: topic, own: own, s: s}
	var err error
	if p.pub, err = b.dial(b.coalesce); err != nil {
		return nil, err
	}
	if p.cons, err = b.dial(false); err != nil {
		_ = p.pub.Close()
		return nil, err
	}
	if p.topo, err = rawTopology(p.pub, queue, topic); err == nil && own {
		_, err = p.topo.QueuePurge(queue, false)
	}
	for k := 0; err == nil && k < s.Publishers; k++ {
		var ch *amqp091.Channel
		if ch, err = p.pub.Channel(); err == nil {
			err = ch.Confirm(false)
			p.pubs = append(p.pubs, amqpPublisher{ch: ch, topic: topic})
		}
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *amqpPipe) settings() rawSettings { return p.s }

func (p *amqpPipe) publishers() []rawPublisher { return p.pubs }

func (p amqpPublisher) publish(m rawMsg) (func() error, error) {
	pub := amqp091.Publishing{
		ContentType:  mq.EnvelopeContentType,
		DeliveryMode: amqp091.Persistent,
		MessageId:    m.id,
		Timestamp:    time.Now(),
		Type:         p.topic,
		Body:         m.body,
	}
	if m.event != nil {
		h := amqp091.Table{}
		mq.EventAttributes(m.event, "finalbench", time.Now(), func(name, value string) { h["cloudEvents:"+name] = value })
		pub = amqp091.Publishing{ContentType: "application/octet-stream", DeliveryMode: amqp091.Persistent,
			MessageId: m.event.UUID, Headers: h, Body: m.event.Payload}
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(context.Background(), "final", p.topic, true, false, pub)
	if err != nil {
		return nil, err
	}
	return func() error {
		if !dc.Wait() {
			return errNacked
		}
		return nil
	}, nil
}

func (p *amqpPipe) consume(got *rawCounter) (func(), error) {
	stop := make(chan struct{})
	done, err := rawConsume(p.cons, p.queue, p.s.Prefetch, got, stop)
	if err != nil {
		return nil, err
	}
	return func() { close(stop); <-done }, nil
}

func (p *amqpPipe) close() {
	if p.topo != nil && p.own {
		_, _ = p.topo.QueueDelete(p.queue, false, false, false)
	}
	_ = p.cons.Close()
	_ = p.pub.Close()
}
