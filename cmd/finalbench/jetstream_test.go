package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/nats"
)

// TestJetStreamRawHelpers runs the raw JetStream side against the local
// server: a pipe's confirmed publishes, from two publishers, reach its
// raw consumer and close deletes its stream; a service pipe declares what
// mq/nats declares (the provider's Init changes nothing of it), the
// preload in either wire format is what the provider decodes, and
// cleanup deletes the service's streams. Its topics and services are its own, so it may run beside a
// benchmark.
func TestJetStreamRawHelpers(t *testing.T) {
	b := jetStream{addr: testenv.NATS(t)}
	nc, err := natsgo.Connect(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r [4]byte
	_, _ = rand.Read(r[:])
	tag := hex.EncodeToString(r[:])
	waitFor := func(got *rawCounter, n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the raw consumer got %d of %d", got.Load(), n)
			}
			time.Sleep(time.Millisecond) // polling interval
		}
	}

	t.Run("pipe", func(t *testing.T) {
		topic := "bench.testraw" + tag
		e := &benchEnv{cfg: config{broker: b, size: 64}}
		var got rawCounter
		// Two publishers, with small windows: the messages split between
		// them, the window stays below the client's bound.
		pipe, closePipe, err := e.openRawPipe(topic, rawSettings{Window: 64, Prefetch: 16, Publishers: 2}, &got)
		if err != nil {
			t.Fatal(err)
		}
		const n = 500
		if _, err := rawPublishTo(pipe, n, func(i int) rawMsg { return rawMsg{id: fmt.Sprintf("%s-%d", tag, i), body: e.body(topic, uint64(i))} }); err != nil {
			t.Fatalf("raw publish: %v", err)
		}
		waitFor(&got, n)
		stream := topicStream(topic).Name
		info, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := info.CachedInfo().Config; cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.InterestPolicy {
			t.Errorf("stream %s: storage %v, retention %v; want file storage, interest retention", stream, cfg.Storage, cfg.Retention)
		}
		closePipe()
		if _, err := js.Stream(ctx, stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("after close, stream %s: %v; want it deleted", stream, err)
		}
	})

	for _, wire := range []mq.WireFormat{mq.Envelope, mq.CloudEvents} {
		t.Run("service/"+wire.String(), func(t *testing.T) {
			svc := "benchtest" + wire.String() + tag
			topic := "bench." + svc
			e := &benchEnv{cfg: config{broker: b, size: 64, wire: wire}}
			pipe, err := b.servicePipe(svc, topic, defaultRawSettings)
			if err != nil {
				t.Fatal(err)
			}
			defer pipe.close()
			t.Cleanup(func() { b.cleanup([]string{svc}) })
			stream := topicStream(topic).Name
			configs := func() (jetstream.StreamConfig, jetstream.ConsumerConfig) {
				s, err := js.Stream(ctx, stream)
				if err != nil {
					t.Fatal(err)
				}
				c, err := s.Consumer(ctx, svc)
				if err != nil {
					t.Fatal(err)
				}
				return s.CachedInfo().Config, c.CachedInfo().Config
			}
			rawStream, rawConsumer := configs()

			// Preloaded and read raw.
			var got rawCounter
			if _, err := rawPublishTo(pipe, 3, func(i int) rawMsg { return e.preloaded(topic, uint64(i)) }); err != nil {
				t.Fatal(err)
			}
			stop, err := pipe.consume(&got)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(&got, 3)
			stop()

			// Preloaded again and read by the provider.
			if _, err := rawPublishTo(pipe, 3, func(i int) rawMsg { return e.preloaded(topic, uint64(10+i)) }); err != nil {
				t.Fatal(err)
			}
			p := b.provider(b.addr)
			if err := p.Init(ctx, mq.Config{Service: svc, Topics: []string{topic}, Prefetch: rawBatch, Logger: quietLogger()}); err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if s, c := configs(); !reflect.DeepEqual(s, rawStream) || !reflect.DeepEqual(c, rawConsumer) {
				t.Errorf("the provider's Init changed what the raw side declared:\nstream   %+v\nwas      %+v\nconsumer %+v\nwas      %+v", s, rawStream, c, rawConsumer)
			}
			ds, err := p.Consume(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				var d mq.Delivery
				select {
				case d = <-ds:
				case <-ctx.Done():
					t.Fatalf("the provider delivered %d of 3", i)
				}
				m, err := d.Message()
				if err != nil {
					t.Fatalf("the provider cannot decode the preload: %v", err)
				}
				if seq := binary.BigEndian.Uint64(m.Payload); m.Topic != topic || seq < 10 || seq > 12 || len(m.Payload) != 64 {
					t.Fatalf("delivery %d: topic %q, seq %d, %d bytes; want %q, 10-12, 64", i, m.Topic, seq, len(m.Payload), topic)
				}
				if err := d.Ack(); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			b.cleanup([]string{svc})
			for _, s := range nats.Streams(benchPrefix, mq.Config{Service: svc, Topics: []string{topic}}) {
				if _, err := js.Stream(ctx, s); !errors.Is(err, jetstream.ErrStreamNotFound) {
					t.Errorf("after cleanup, stream %s: %v; want it deleted", s, err)
				}
			}
		})
	}
}
