package memory_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/mq/mqtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	b := memory.NewBroker()
	var n atomic.Int64
	mqtest.Run(t, mqtest.Harness{
		New:     func(t *testing.T) mq.IProvider { return b.Provider() },
		Service: func(t *testing.T) string { return fmt.Sprintf("svc%d", n.Add(1)) },
	})
}

// The shards of an Ordered topic go in parallel across the instances of a
// service, while a shard has one delivery out at a time: of a1, a2 (one
// key) and b1 (another shard), two instances receive a1 and b1 first, and
// a2 once a1 is acknowledged.
func TestShardsGoInParallel(t *testing.T) {
	b := memory.NewBroker()
	cfg := mq.Config{Service: "svc", Ordered: []string{"o"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var chans []<-chan mq.Delivery
	for i := 0; i < 2; i++ {
		p := b.Provider()
		if err := p.Init(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ch, err := p.Consume(ctx)
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	other := "b"
	for i := 0; mq.Shard(other) == mq.Shard("a"); i++ {
		other = fmt.Sprintf("b%d", i)
	}
	a1, a2, b1 := message.New("o", nil, message.WithKey("a")), message.New("o", nil, message.WithKey("a")), message.New("o", nil, message.WithKey(other))
	pub := b.Provider()
	if err := pub.Init(ctx, mq.Config{Service: "pub", Logger: cfg.Logger}); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, m := range []*message.Message{a1, a2, b1} {
		conf, err := pub.Publish(ctx, m)
		if err != nil || conf.Wait(ctx) != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	receive := func() (mq.Delivery, string) {
		t.Helper()
		var d mq.Delivery
		select {
		case d = <-chans[0]:
		case d = <-chans[1]:
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
		}
		m, err := d.Message()
		if err != nil {
			t.Fatal(err)
		}
		return d, m.UUID
	}
	out := map[string]mq.Delivery{}
	for len(out) < 2 {
		d, id := receive()
		out[id] = d
	}
	if out[a1.UUID] == nil || out[b1.UUID] == nil {
		t.Fatalf("first deliveries %v, want a1 %s and b1 %s", out, a1.UUID, b1.UUID)
	}
	if err := out[a1.UUID].Ack(); err != nil {
		t.Fatal(err)
	}
	if _, id := receive(); id != a2.UUID {
		t.Fatalf("got %s, want a2 %s", id, a2.UUID)
	}
}
