package main

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// broker is what differs between the brokers finalbench runs on, so that
// every phase does the same work on each: the library's provider, and the
// raw side of the limits, written with the broker's own client library
// alone (amqp091-go; nats.go's jetstream package) and declaring what the
// provider declares.
type broker interface {
	// name is the broker's name in messages ("RabbitMQ", "NATS").
	name() string
	// version is the server's name and version for the report, or the
	// name and "unknown".
	version() string
	// settings describes, in the broker's words, how the raw limits
	// publish and consume with s.
	settings(s rawSettings) string
	// url is the configured URL of the server.
	url() string
	// provider is the library's provider for the server at url: url(),
	// or a proxy's URL in front of it.
	provider(url string) mq.IProvider
	// pipe declares, as the provider declares a topic's destination, a
	// destination of its own for topic, empty (a durable queue; a stream
	// and a durable pull consumer), and opens it to publish and consume
	// with s. close deletes it.
	pipe(topic string, s rawSettings) (rawPipe, error)
	// servicePipe declares what the provider declares for service svc
	// subscribed to topic, for the library to consume afterwards, and
	// opens it with s; close leaves it to cleanup.
	servicePipe(svc, topic string, s rawSettings) (rawPipe, error)
	// cleanup deletes what the library declared for services (each
	// subscribed to the topic "bench.<service>").
	cleanup(services []string)
}

// rawPipe is the broker side of a raw limit: a destination declared as
// the provider declares it, confirming publishers on a connection of their
// own and a raw consumer on another.
type rawPipe interface {
	// settings are the settings the pipe was opened with.
	settings() rawSettings
	// publishers are the pipe's settings().Publishers publishers (AMQP:
	// each on a confirming channel of its own; JetStream: goroutines
	// sharing the publishing connection).
	publishers() []rawPublisher
	// consume starts a raw consumer that acks each delivery (AMQP:
	// prefetch settings().Prefetch; JetStream: pull requests of that
	// many) and counts it in got, until stop, which returns once it has
	// stopped.
	consume(got *rawCounter) (stop func(), err error)
	// close stops what is running and closes the connections.
	close()
}

// rawCounter counts a raw consumer's deliveries, and passes each one's
// message id to seen first, when it is set (the raw stack's latency).
type rawCounter struct {
	atomic.Int64
	seen func(id string)
}

// delivered counts a delivery of the message with id.
func (c *rawCounter) delivered(id string) {
	if c.seen != nil {
		c.seen(id)
	}
	c.Add(1)
}

// rawPublisher is one of a pipe's publishers.
type rawPublisher interface {
	// publish sends m to the pipe's topic without waiting for the
	// broker's confirm, which the returned function waits for. One
	// goroutine publishes on a publisher; another may wait.
	publish(m rawMsg) (confirm func() error, err error)
}

// rawMsg is a message as the provider sends it: the envelope with the
// provider's properties (AMQP: persistent, mandatory, message id, type,
// timestamp; JetStream: Content-Type and Nats-Msg-Id headers), or a
// CloudEvent in binary mode.
type rawMsg struct {
	id   string // the message id: the envelope's UUID, or any unique string
	body []byte // the envelope: message.Marshal of the message
	// event, when set, is sent instead as the CloudEvents wire format
	// sends it: its payload as the body, its attributes as headers.
	event *message.Message
}

const (
	// rawBatch is the raw consumers' prefetch (AMQP) or pull batch
	// (JetStream) without the sweep (-raw-sweep=false).
	rawBatch = 32
	// rawWindow bounds the confirms outstanding per publisher without the
	// sweep.
	rawWindow = 2048
	// benchPrefix is the NATS provider's prefix in every phase, so that
	// the benchmark's streams are apart from the applications' ("final").
	benchPrefix = "bench"
)

// newBroker returns the broker named by -broker.
func newBroker(name string, c config) (broker, error) {
	switch name {
	case "rabbitmq":
		b := rabbitMQ{addr: c.amqpURL, coalesce: c.rawCoalesce}
		if c.ackBatch >= 0 {
			b.ackBatch = &c.ackBatch
		}
		return b, nil
	case "nats":
		return jetStream{addr: c.natsURL}, nil
	}
	return nil, fmt.Errorf("unknown -broker %q (have rabbitmq, nats)", name)
}

// brokerLabel names the broker in the chart, from the version in
// results.json (whose files from before -broker hold RabbitMQ's version
// alone).
func brokerLabel(version string) string {
	if strings.HasPrefix(version, "NATS") {
		return "NATS JetStream"
	}
	return "RabbitMQ"
}
