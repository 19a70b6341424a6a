package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
)

// A declaration killed part way through leaves the topic's stream in one of
// the states its opening goes through (see stream.go); the next declaration
// of that service resumes from it and loses nothing confirmed meanwhile.
func TestDeclarationResumesAHalfOpenStream(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, done, err := testenv.JetStream(url, 10*time.Second)
	require.NoError(t, err)
	defer done()

	for _, state := range []string{"closed", "guarded and open"} {
		t.Run(state, func(t *testing.T) {
			o := defaultOptions()
			o.prefix = testenv.NATSPrefix(t)
			var b [4]byte
			_, _ = rand.Read(b[:])
			svc := "s" + hex.EncodeToString(b[:])
			topic := svc + ".half"
			topo := newTopology(o, mq.Config{Service: svc, Ordered: []string{topic}, Prefetch: 1}, "i")
			cfg := topo.streams[0]
			closed := cfg
			closed.Subjects = topo.names.closedSubjects(cfg.Name)
			_, err := js.CreateStream(ctx, closed)
			require.NoError(t, err)

			m := natsgo.NewMsg(topo.names.shardSubject(topic, 3))
			m.Data = []byte("confirmed while half open")
			if state == "closed" {
				// As before any stream: refused, for the publisher to retry.
				_, err := js.PublishMsg(ctx, m)
				require.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
			} else {
				_, err := js.CreateOrUpdateConsumer(ctx, cfg.Name, jetstream.ConsumerConfig{
					Name: guardConsumer(svc), AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: guardIdle,
				})
				require.NoError(t, err)
				_, err = js.UpdateStream(ctx, cfg)
				require.NoError(t, err)
				_, err = js.PublishMsg(ctx, m)
				require.NoError(t, err)
			}

			// A publisher sends to the shard while the service declares.
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
					_, err := js.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
					if err == nil {
						n++
					} else if !errors.Is(err, jetstream.ErrNoStreamResponse) {
						t.Errorf("publish: %v", err)
						return
					}
				}
			}()
			consumers, err := topo.declare(ctx, js, false)
			close(stop)
			require.NoError(t, err)
			_, err = js.Consumer(ctx, cfg.Name, guardConsumer(svc))
			require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the guard stayed")
			if _, err := js.PublishMsg(ctx, m); err != nil {
				require.NoError(t, err, "the stream did not open")
			}
			want := <-sent + 1 // and the one after
			if state != "closed" {
				want++ // the one while it was half open
			}
			for i, sub := range topo.subs {
				if sub.cfg.FilterSubject != m.Subject {
					continue
				}
				got := 0
				for { // the shard's consumer hands out one message at a time
					batch, err := consumers[i].Fetch(1, jetstream.FetchMaxWait(time.Second))
					require.NoError(t, err)
					n := 0
					for msg := range batch.Messages() {
						require.Equal(t, m.Data, msg.Data())
						require.NoError(t, msg.DoubleAck(ctx))
						n++
					}
					if n == 0 {
						break
					}
					got += n
				}
				require.Equal(t, want, got)
			}
		})
	}
}
