package final

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox"
)

// failingProvider publishes to the in-memory broker, but refuses the
// publish of the messages in refuse and nacks those in nack (not sent);
// it counts the publishes tried of each message.
type failingProvider struct {
	*memory.Provider
	refuse, nack map[string]bool

	mu    sync.Mutex
	tried map[string]int
}

func (p *failingProvider) PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	p.mu.Lock()
	p.tried[msg.UUID]++
	p.mu.Unlock()
	switch {
	case p.refuse[msg.UUID]:
		return nil, mq.ErrUnavailable
	case p.nack[msg.UUID]:
		return nackedConfirmation{}, nil
	}
	return p.Provider.PublishEncoded(ctx, msg, body)
}

func (p *failingProvider) triedOf(uuid string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tried[uuid]
}

type nackedConfirmation struct{}

func (nackedConfirmation) Wait(context.Context) error { return mq.ErrNacked }

// packOf is a committed pack of n messages of topic t.
func packOf(t *testing.T, id int64, n int) outgoing {
	t.Helper()
	o := outgoing{id: id}
	for range n {
		m, err := snapshot(message.New("t", []byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		o.pack = append(o.pack, outbox.Part{Message: m.msg, Body: m.body})
	}
	return o
}

// A pack gets one verdict: it is deleted once, when every message in it is
// confirmed, and it fails once, not deleted, when one of its messages is
// nacked (the others go on) or cannot be published (the rest are not
// tried: the row is sent whole again anyway).
func TestDispatcherGivesAPackOneVerdict(t *testing.T) {
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	good, nacked, refused := packOf(t, 1, 3), packOf(t, 2, 3), packOf(t, 3, 3)
	p := &failingProvider{
		Provider: memory.NewBroker().Provider(),
		nack:     map[string]bool{nacked.pack[1].Message.UUID: true},
		refuse:   map[string]bool{refused.pack[0].Message.UUID: true},
		tried:    map[string]int{},
	}
	if err := p.Init(context.Background(), mq.Config{Service: "svc", Topics: []string{"t"}, Logger: o.Logger}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	store := &countingStore{}
	a := newAcker(context.Background(), store, o)
	d := newDispatcher(context.Background(), p, a, o)
	a.start(1)
	d.start()
	for _, row := range []outgoing{good, nacked, refused} {
		if err := d.submit(context.Background(), row); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() >= 1 && store.failed.Load() >= 2 }, "the verdicts")
	d.close()
	d.wait()
	a.closeAndWait()
	if del, failed := store.deleted.Load(), store.failed.Load(); del != 1 || failed != 2 {
		t.Fatalf("%d rows deleted and %d failed; want 1 (the good pack) and 2 (the other packs)", del, failed)
	}
	for i, part := range nacked.pack {
		if n := p.triedOf(part.Message.UUID); n != 1 {
			t.Fatalf("message %d of the nacked pack was tried %d times, want 1", i, n)
		}
	}
	for i, part := range refused.pack {
		if want := map[bool]int{true: 1, false: 0}[i == 0]; p.triedOf(part.Message.UUID) != want {
			t.Fatalf("message %d of the refused pack was tried %d times, want %d", i, p.triedOf(part.Message.UUID), want)
		}
	}
	if held, _ := d.bytes.held(); held != 0 {
		t.Fatalf("%d bytes still counted held", held)
	}
}
