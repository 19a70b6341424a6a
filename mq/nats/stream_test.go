package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
)

// hookedJS is a JetStream whose consumer requests a test watches and
// interferes with: before is called ahead of each create or update.
type hookedJS struct {
	jetstream.JetStream
	before func(stream string, cfg jetstream.ConsumerConfig)
}

func (h hookedJS) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	h.before(stream, cfg)
	return h.JetStream.CreateConsumer(ctx, stream, cfg)
}

func (h hookedJS) UpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	h.before(stream, cfg)
	return h.JetStream.UpdateConsumer(ctx, stream, cfg)
}

func (h hookedJS) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	h.before(stream, cfg)
	return h.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
}

// halfOpen is a topic stream as a declaration left it.
type halfOpen struct {
	js    jetstream.JetStream
	topo  topology
	cfg   jetstream.StreamConfig
	msg   *natsgo.Msg // a message to one of its shards
	shard int         // the index in topo.subs of that shard's subscription
}

// newHalfOpen creates a closed stream for an Ordered topic of a new
// service, as a declaration killed after its first step leaves it.
func newHalfOpen(ctx context.Context, t *testing.T, js jetstream.JetStream) halfOpen {
	t.Helper()
	o := defaultOptions()
	o.prefix = testenv.NATSPrefix(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	svc := "s" + hex.EncodeToString(b[:])
	topic := svc + ".half"
	h := halfOpen{js: js, topo: newTopology(o, mq.Config{Service: svc, Ordered: []string{topic}, Prefetch: 1}, "i")}
	h.cfg = h.topo.streams[0]
	closed := h.cfg
	closed.Subjects = h.topo.names.closedSubjects(h.cfg.Name)
	_, err := js.CreateStream(ctx, closed)
	require.NoError(t, err)
	h.msg = natsgo.NewMsg(h.topo.names.shardSubject(topic, 3))
	h.msg.Data = []byte("confirmed while half open")
	h.shard = -1
	for i, sub := range h.topo.subs {
		if sub.cfg.FilterSubject == h.msg.Subject {
			h.shard = i
		}
	}
	require.GreaterOrEqual(t, h.shard, 0)
	return h
}

// publishWhile publishes h.msg in a loop while during runs, retrying what
// no stream takes, and returns how many publishes were confirmed.
func (h halfOpen) publishWhile(ctx context.Context, t *testing.T, during func()) int {
	t.Helper()
	stop, sent := make(chan struct{}), make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := h.js.PublishMsg(ctx, h.msg, jetstream.WithRetryAttempts(0))
			if err == nil {
				n++
			} else if !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Errorf("publish: %v", err)
				return
			}
		}
	}()
	during()
	close(stop)
	return <-sent
}

// receive takes want messages from the shard's consumer c, acking each,
// and checks that no more come.
func (h halfOpen) receive(ctx context.Context, t *testing.T, c jetstream.Consumer, want int) {
	t.Helper()
	for got := 0; got < want; got++ { // the shard's consumer hands out one at a time
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		require.NoError(t, err)
		n := 0
		for msg := range batch.Messages() {
			require.Equal(t, h.msg.Data, msg.Data())
			require.NoError(t, msg.DoubleAck(ctx))
			n++
		}
		require.Equal(t, 1, n, "message %d of %d confirmed did not come", got+1, want)
	}
	batch, err := c.FetchNoWait(1)
	require.NoError(t, err)
	for range batch.Messages() {
		t.Fatal("more messages than were confirmed")
	}
}

// A declaration killed part way through leaves the topic's stream in one of
// the states its opening goes through (see stream.go); the next declaration
// of that service resumes from it and loses nothing confirmed meanwhile.
func TestDeclarationResumesAHalfOpenStream(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js, done, err := testenv.JetStream(url, 10*time.Second)
	require.NoError(t, err)
	defer done()

	t.Run("closed", func(t *testing.T) {
		h := newHalfOpen(ctx, t, js)
		// As before any stream: refused, for the publisher to retry.
		_, err := js.PublishMsg(ctx, h.msg)
		require.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
		var consumers []jetstream.Consumer
		sent := h.publishWhile(ctx, t, func() {
			consumers, err = h.topo.declare(ctx, js, false)
			require.NoError(t, err)
		})
		_, err = js.PublishMsg(ctx, h.msg)
		require.NoError(t, err, "the stream did not open")
		h.receive(ctx, t, consumers[h.shard], sent+1)
	})

	t.Run("guarded and open", func(t *testing.T) {
		h := newHalfOpen(ctx, t, js)
		guard := jetstream.ConsumerConfig{Name: guardConsumer(h.topo.service), AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: guardIdle}
		_, err := js.CreateConsumer(ctx, h.cfg.Name, guard)
		require.NoError(t, err)
		_, err = js.UpdateStream(ctx, h.cfg)
		require.NoError(t, err)
		_, err = js.PublishMsg(ctx, h.msg) // kept by the guard
		require.NoError(t, err)

		// The guard is left as it is: an update would restart its
		// inactivity clock, and repeated failing declarations would keep
		// it, and every message, for ever.
		var guardRequests int
		hooked := hookedJS{JetStream: js, before: func(_ string, cfg jetstream.ConsumerConfig) {
			if cfg.Name == guard.Name {
				guardRequests++
			}
		}}
		var consumers []jetstream.Consumer
		sent := h.publishWhile(ctx, t, func() {
			consumers, err = h.topo.declare(ctx, hooked, false)
			require.NoError(t, err)
		})
		require.Zero(t, guardRequests, "the guard was updated")
		_, err = js.Consumer(ctx, h.cfg.Name, guard.Name)
		require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the guard stayed")
		_, err = js.PublishMsg(ctx, h.msg)
		require.NoError(t, err)
		h.receive(ctx, t, consumers[h.shard], 1+sent+1)
	})

	// The consume loop re-creates a consumer the server or an operator
	// deleted; on a stream left closed it opens the stream too.
	t.Run("closed, one consumer declared again", func(t *testing.T) {
		h := newHalfOpen(ctx, t, js)
		c, err := h.topo.ensure(ctx, js, h.topo.subs[h.shard])
		require.NoError(t, err)
		_, err = js.PublishMsg(ctx, h.msg)
		require.NoError(t, err, "the stream did not open")
		h.receive(ctx, t, c, 1)
	})
}

// Another service's Reconcile deletes a stream it finds without consumers:
// a new stream, closed, may go while it is being opened. The declaration
// creates it again.
func TestDeclarationOutlivesItsNewStreamDeleted(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, done, err := testenv.JetStream(url, 10*time.Second)
	require.NoError(t, err)
	defer done()
	h := newHalfOpen(ctx, t, js)
	var once sync.Once
	hooked := hookedJS{JetStream: js, before: func(stream string, cfg jetstream.ConsumerConfig) {
		if cfg.Name == guardConsumer(h.topo.service) {
			once.Do(func() { require.NoError(t, js.DeleteStream(ctx, stream)) })
		}
	}}
	consumers, err := h.topo.declare(ctx, hooked, false)
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, h.msg)
	require.NoError(t, err, "the stream did not open")
	h.receive(ctx, t, consumers[h.shard], 1)
}
