package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/nats"
)

// jetStream is the broker of -broker nats: the raw side with nats.go's
// jetstream package alone, the library's with mq/nats, both with the
// prefix benchPrefix.
type jetStream struct{ addr string }

// maxPending is the JetStream client's own bound on unacknowledged async
// publishes for a pipe with s, set above the windows its publishers keep
// together so that those windows are the bound: at the client's bound a
// publish stalls and then fails.
func maxPending(s rawSettings) int { return 2 * s.Window * s.Publishers }

// requestTimeout bounds a raw pipe's JetStream API requests.
const requestTimeout = 10 * time.Second

func (jetStream) name() string { return "NATS" }

func (b jetStream) version() string {
	nc, err := natsgo.Connect(b.addr, natsgo.NoReconnect())
	if err != nil {
		return "NATS unknown"
	}
	defer nc.Close()
	return "NATS " + nc.ConnectedServerVersion()
}

func (jetStream) settings(s rawSettings) string {
	return fmt.Sprintf("nats.go jetstream, async publish with Nats-Msg-Id to a file-storage interest stream as mq/nats declares it, "+
		"up to %d acks outstanding per publisher, %s on one connection; pull consumer (Consume, batches of %d), explicit ack per delivery (%s)",
		s.Window, plural(s.Publishers, "publishing goroutine"), s.Prefetch, s)
}

func (b jetStream) url() string { return b.addr }

func (jetStream) provider(url string) mq.IProvider {
	return nats.NewProvider(url, nats.WithPrefix(benchPrefix))
}

func (b jetStream) cleanup(services []string) {
	nc, err := natsgo.Connect(b.addr, natsgo.NoReconnect())
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, svc := range services {
		for _, s := range nats.Streams(benchPrefix, mq.Config{Service: svc, Topics: []string{"bench." + svc}}) {
			_ = js.DeleteStream(ctx, s) // with its consumers
		}
	}
}

// topicStream is the stream mq/nats declares for topic: file storage,
// interest retention, the server's duplicate window, capturing the topic's
// subject and its shards'. (The benchmark's topics have no empty token,
// which the provider would write as "~".)
func topicStream(topic string) jetstream.StreamConfig {
	subject := benchPrefix + "." + topic
	subjects := []string{subject}
	for i := 0; i < mq.OrderShards; i++ {
		subjects = append(subjects, subject+".~"+strconv.Itoa(i))
	}
	return jetstream.StreamConfig{
		Name:              nats.Streams(benchPrefix, mq.Config{Service: "x", Topics: []string{topic}})[0],
		Description:       "final: topic " + topic,
		Subjects:          subjects,
		Retention:         jetstream.InterestPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		Duplicates:        2 * time.Minute,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
	}
}

// serviceConsumer is the durable consumer mq/nats declares for service
// svc's plain subscription (the benchmark's services have no '.' or '_',
// which the provider would escape).
func serviceConsumer(svc string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       svc,
		Description:   "final: service " + svc,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
	}
}

// jsPipe is a topic's stream and a durable pull consumer on it,
// publishers on one connection and the consumer's puller on another.
type jsPipe struct {
	pub, cons *natsgo.Conn
	js        jetstream.JetStream // on pub
	consumer  jetstream.Consumer  // on cons
	stream    string
	subject   string
	own       bool // the stream is the pipe's: close deletes it
	s         rawSettings
}

// jsPublisher publishes to the pipe's subject. A pipe's publishers share
// its JetStream context, which is safe for concurrent use: with two, two
// goroutines publish and the connection's writer is the one shared part.
type jsPublisher struct {
	js      jetstream.JetStream
	subject string
}

func (b jetStream) pipe(topic string, s rawSettings) (rawPipe, error) {
	return b.open(topic, serviceConsumer("raw"), true, s)
}

func (b jetStream) servicePipe(svc, topic string, s rawSettings) (rawPipe, error) {
	return b.open(topic, serviceConsumer(svc), false, s)
}

// open declares topic's stream (anew when it is the pipe's own, so that
// it is empty and its duplicate window too) and the consumer cc, and
// opens the connections for s. The consumer is created before anything is
// published: an interest stream keeps only what some consumer will read.
func (b jetStream) open(topic string, cc jetstream.ConsumerConfig, own bool, s rawSettings) (p *jsPipe, err error) {
	cfg := topicStream(topic)
	p = &jsPipe{stream: cfg.Name, subject: cfg.Subjects[0], own: own, s: s}
	defer func() {
		if err != nil {
			p.close()
			p = nil
		}
	}()
	if p.pub, err = natsgo.Connect(b.addr, natsgo.Name("finalbench raw publisher"), natsgo.NoReconnect()); err != nil {
		return p, err
	}
	if p.cons, err = natsgo.Connect(b.addr, natsgo.Name("finalbench raw consumer"), natsgo.NoReconnect()); err != nil {
		return p, err
	}
	if p.js, err = jetstream.New(p.pub, jetstream.WithPublishAsyncMaxPending(maxPending(s))); err != nil {
		return p, err
	}
	consJS, err := jetstream.New(p.cons)
	if err != nil {
		return p, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if own {
		if err := p.js.DeleteStream(ctx, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return p, err
		}
	}
	if _, err = p.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return p, fmt.Errorf("raw stream %s: %w", cfg.Name, err)
	}
	if p.consumer, err = consJS.CreateOrUpdateConsumer(ctx, cfg.Name, cc); err != nil {
		return p, fmt.Errorf("raw consumer %s/%s: %w", cfg.Name, cc.Durable, err)
	}
	return p, nil
}

func (p *jsPipe) settings() rawSettings { return p.s }

func (p *jsPipe) publishers() []rawPublisher {
	pubs := make([]rawPublisher, p.s.Publishers)
	for k := range pubs {
		pubs[k] = jsPublisher{js: p.js, subject: p.subject}
	}
	return pubs
}

func (p jsPublisher) publish(m rawMsg) (func() error, error) {
	msg := &natsgo.Msg{Subject: p.subject, Header: natsgo.Header{}}
	if m.event != nil {
		mq.EventAttributes(m.event, "finalbench", time.Now(), func(name, value string) { msg.Header.Set("ce-"+name, percentEncode(value)) })
		msg.Header.Set(jetstream.MsgIDHeader, m.event.UUID)
		msg.Data = m.event.Payload
	} else {
		msg.Header.Set("Content-Type", mq.EnvelopeContentType)
		if m.id != "" {
			msg.Header.Set(jetstream.MsgIDHeader, m.id)
		}
		msg.Data = m.body
	}
	fut, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return nil, err
	}
	return func() error {
		select {
		case <-fut.Ok():
			return nil
		case err := <-fut.Err():
			return err
		}
	}, nil
}

func (p *jsPipe) consume(got *rawCounter) (func(), error) {
	cc, err := p.consumer.Consume(func(m jetstream.Msg) {
		_ = m.Ack() // as the provider acks: without waiting for the server's reply
		var id string
		if got.seen != nil { // the headers are read only when asked for
			id = m.Headers().Get(jetstream.MsgIDHeader)
		}
		got.delivered(id)
	}, jetstream.PullMaxMessages(p.s.Prefetch))
	if err != nil {
		return nil, err
	}
	// The flush makes the server drop the pull request still open before
	// anything else is published, rather than send it messages nobody
	// reads, which would come back only after the ack wait.
	return func() { cc.Stop(); <-cc.Closed(); _ = p.cons.Flush() }, nil
}

func (p *jsPipe) close() {
	if p.own && p.js != nil {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		_ = p.js.DeleteStream(ctx, p.stream)
		cancel()
	}
	if p.cons != nil {
		p.cons.Close()
	}
	if p.pub != nil {
		p.pub.Close()
	}
}

// percentEncode writes an attribute's value as the CloudEvents NATS
// binding asks of a header (as mq/nats does): space, '"', '%' and every
// byte outside printable ASCII become %XY.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '%' || c > '~' {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}
