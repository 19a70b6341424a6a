package nats_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/nats"
)

// While a topic's first subscriber declares it, publishers keep sending to
// it: every publish the broker confirms reaches the subscriber; the others
// are refused (unroutable), for the publisher to send again. A confirmed
// publish landing between the stream's creation and its consumers' would be
// dropped by the stream (it keeps messages only for the consumers it has),
// and the publisher's outbox would delete a row nobody receives.
func TestFirstDeclarationLosesNoConfirmedPublish(t *testing.T) {
	url := testenv.NATS(t)
	for _, kind := range []string{"plain", "ordered"} {
		t.Run(kind, func(t *testing.T) {
			const rounds = 8
			for round := 0; round < rounds; round++ {
				svc := service()
				topic := svc + ".first"
				cfg := mq.Config{Service: svc, Topics: []string{topic}}
				if kind == "ordered" {
					cfg = mq.Config{Service: svc, Ordered: []string{topic}}
				}
				pub := start(t, url, mq.Config{Service: service()})

				// Publishers send until told to stop, each message once,
				// keyed and unkeyed in turn, and record what was confirmed.
				var (
					mu        sync.Mutex
					confirmed = map[string]bool{}
					stop      = make(chan struct{})
					wg        sync.WaitGroup
				)
				for w := 0; w < 4; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							m := message.New(topic, []byte("x"))
							if i%2 == 0 {
								m.Key = strconv.Itoa(w*100000 + i)
							}
							ctx, cancel := context.WithTimeout(context.Background(), wait)
							conf, err := pub.Publish(ctx, m)
							if err == nil {
								err = conf.Wait(ctx)
							}
							cancel()
							switch {
							case err == nil:
								mu.Lock()
								confirmed[m.UUID] = true
								mu.Unlock()
							case errors.Is(err, mq.ErrUnroutable):
							default:
								t.Errorf("publish: %v", err)
								return
							}
						}
					}()
				}
				sub := start(t, url, cfg) // declares the topic's stream and consumers
				ch := consume(t, sub)
				// Let the publishers go on a little past the declaration.
				testenv.Eventually(t, wait, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(confirmed) >= 50
				}, "no publish confirmed after the declaration")
				close(stop)
				wg.Wait()

				missing := len(confirmed)
				deadline := time.After(wait)
				for missing > 0 {
					select {
					case d := <-ch:
						m, err := d.Message()
						require.NoError(t, err)
						require.NoError(t, d.Ack())
						if confirmed[m.UUID] {
							confirmed[m.UUID] = false
							missing--
						}
					case <-deadline:
						t.Fatalf("round %d: %d of the confirmed publishes never arrived", round, missing)
					}
				}
				// Once the guard has gone and every delivery is acked, the
				// stream keeps nothing.
				stream, consumers := nats.Streams(prefixFor(t), cfg)[0], 1
				if kind == "ordered" {
					consumers = 1 + mq.OrderShards // the unkeyed messages' and the shards'
				}
				testenv.Eventually(t, wait, func() bool {
					info, err := streamInfo(url, stream)
					return err == nil && info.State.Msgs == 0 && info.State.Consumers == consumers
				}, "the stream kept acked messages, or the guard")
			}
		})
	}
}

// streamInfo reads a stream's state on its own connection.
func streamInfo(url, stream string) (*jetstream.StreamInfo, error) {
	js, done, err := testenv.JetStream(url, wait)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}
