package amqp_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// BenchmarkPublishEncoded measures one confirmed publish of an outbox row
// to the local RabbitMQ, pipelined 128 deep as the dispatcher does, in each
// wire format: the envelope sends the stored bytes, CloudEvents maps the
// message's fields to headers. Its allocations are the provider's per
// publish (amqp091-go's included).
func BenchmarkPublishEncoded(b *testing.B) {
	url := testenv.AMQP(b)
	for _, f := range []mq.WireFormat{mq.Envelope, mq.CloudEvents} {
		b.Run(f.String(), func(b *testing.B) {
			svc := testenv.Service(b, nil)
			topic := svc + ".bench"
			cfg := mq.Config{Service: svc, Topics: []string{topic}, WireFormat: f, Prefetch: 10,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			testenv.DropQueues(b, amqp.Queues(cfg)...)
			p := amqp.NewProvider(url)
			if err := p.Init(context.Background(), cfg); err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			m := message.New(topic, make([]byte, 256), message.WithContentType("application/json"))
			m.Header.Set("tenant", "acme")
			body, err := message.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			if f == mq.CloudEvents {
				body = nil // the bus sends the message whole
			}
			ctx := context.Background()
			window := make(chan mq.Confirmation, 128)
			done := make(chan error, 1)
			go func() {
				var err error
				for c := range window {
					if e := c.Wait(ctx); e != nil && err == nil {
						err = e
					}
				}
				done <- err
			}()
			b.ReportAllocs()
			for b.Loop() {
				c, err := p.PublishEncoded(ctx, m, body)
				if err != nil {
					b.Fatal(err)
				}
				window <- c
			}
			close(window)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
