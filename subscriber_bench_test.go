package final

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// chanProvider hands out what the benchmark sends on its channel.
type chanProvider struct{ ch chan mq.Delivery }

func (*chanProvider) Init(context.Context, mq.Config) error { return nil }
func (*chanProvider) Publish(context.Context, *message.Message) (mq.Confirmation, error) {
	return nil, mq.ErrUnavailable
}
func (p *chanProvider) Consume(context.Context) (<-chan mq.Delivery, error) { return p.ch, nil }
func (*chanProvider) Close() error                                          { return nil }

// benchDelivery decodes its body, as a broker's delivery does, and counts
// its ack.
type benchDelivery struct {
	body []byte
	done *sync.WaitGroup
}

func (d *benchDelivery) Message() (*message.Message, error) { return message.Unmarshal(d.body) }
func (*benchDelivery) Redelivered() bool                    { return false }
func (d *benchDelivery) Ack() error                         { d.done.Done(); return nil }
func (*benchDelivery) Requeue() error                       { return nil }
func (*benchDelivery) DeadLetter(context.Context, string) error {
	return nil
}

// BenchmarkSubscribe measures the subscriber alone: a delivery handed over,
// decoded, routed, handled by a handler that does nothing, and acked. Its
// ns/op is wall time with the sender, the router and the workers running
// at once on GOMAXPROCS cores, not CPU a delivery (-cpu 1 comes closer).
func BenchmarkSubscribe(b *testing.B) {
	body, err := message.Marshal(message.New("t", make([]byte, 256)))
	if err != nil {
		b.Fatal(err)
	}
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &chanProvider{ch: make(chan mq.Delivery)}
	routes := map[string]*route{"t": {chain: []HandlerFunc{func(*Context) error { return nil }}}}
	s := newSubscriber(&Bus{}, routes, o)
	s.provider = p
	if err := s.start(); err != nil {
		b.Fatal(err)
	}
	var done sync.WaitGroup
	ds := make([]benchDelivery, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	done.Add(b.N)
	for i := range ds {
		ds[i] = benchDelivery{body: body, done: &done}
		p.ch <- &ds[i]
	}
	done.Wait()
	b.StopTimer()
	close(p.ch)
	s.stop(context.Background(), context.Background())
}
