package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/nats"
)

const wait = 10 * time.Second

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// service returns a fresh service name; what it leaves on the server goes
// with its test's prefix.
func service() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "s" + hex.EncodeToString(b[:])
}

// start initialises a provider on url for cfg, closed when t ends.
func start(t *testing.T, url string, cfg mq.Config, opts ...nats.Option) *nats.Provider {
	t.Helper()
	p := nats.NewProvider(url, append([]nats.Option{nats.WithPrefix(prefixFor(t))}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 8
	}
	cfg.Logger = quiet()
	require.NoError(t, p.Init(ctx, cfg))
	t.Cleanup(func() { p.Close() })
	return p
}

func consume(t *testing.T, p mq.IProvider) <-chan mq.Delivery {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := p.Consume(ctx)
	require.NoError(t, err)
	return ch
}

func publish(t *testing.T, p mq.IProvider, m *message.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conf, err := p.Publish(ctx, m)
	require.NoError(t, err)
	require.NoError(t, conf.Wait(ctx))
}

func next(t *testing.T, ch <-chan mq.Delivery) (mq.Delivery, *message.Message) {
	t.Helper()
	select {
	case d, ok := <-ch:
		require.True(t, ok, "delivery channel closed")
		m, err := d.Message()
		require.NoError(t, err)
		return d, m
	case <-time.After(wait):
		t.Fatal("no delivery within", wait)
	}
	return nil, nil
}

// nothing asserts that no delivery arrives within d.
func nothing(t *testing.T, ch <-chan mq.Delivery, d time.Duration) {
	t.Helper()
	select {
	case got := <-ch:
		m, _ := got.Message()
		t.Fatalf("unexpected delivery %+v", m)
	case <-time.After(d):
	}
}

// The UUID is the Nats-Msg-Id: the same message published twice within
// the duplicate window is stored, and delivered, once; both publishes are
// confirmed.
func TestSameUUIDDeliveredOnce(t *testing.T) {
	url := testenv.NATS(t)
	svc := service()
	topic := svc + ".dup"
	p := start(t, url, mq.Config{Service: svc, Topics: []string{topic}})
	ch := consume(t, p)
	m := message.New(topic, []byte("once"))
	publish(t, p, m)
	publish(t, p, m)
	sentinel := message.New(topic, []byte("sentinel"))
	publish(t, p, sentinel)
	d, got := next(t, ch)
	require.Equal(t, m.UUID, got.UUID)
	require.NoError(t, d.Ack())
	d, got = next(t, ch)
	require.Equal(t, sentinel.UUID, got.UUID, "the duplicate was delivered")
	require.NoError(t, d.Ack())
}

// A topic without a subscriber has no stream: its publishes are reported
// unroutable, and routed once a service subscribes.
func TestUnroutableUntilSubscribed(t *testing.T) {
	url := testenv.NATS(t)
	svc := service()
	topic := svc + ".later"
	pub := start(t, url, mq.Config{Service: service()})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conf, err := pub.Publish(ctx, message.New(topic, []byte("x")))
	require.NoError(t, err)
	require.ErrorIs(t, conf.Wait(ctx), mq.ErrUnroutable)

	start(t, url, mq.Config{Service: svc, Topics: []string{topic}})
	publish(t, pub, message.New(topic, []byte("y")))
}

// hostport returns the host:port of a nats:// URL.
func hostport(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Host
}

// While the link is cut, publishing fails at once with ErrUnavailable and
// Ready is open; once it is back, Ready closes and publishing works.
func TestPublishFailsFastWhileDisconnected(t *testing.T) {
	url := testenv.NATS(t)
	proxy, err := faultnet.NewProxy(hostport(t, url))
	require.NoError(t, err)
	defer proxy.Close()
	svc := service()
	topic := svc + ".t"
	start(t, url, mq.Config{Service: svc, Topics: []string{topic}}) // the stream
	p := start(t, "nats://"+proxy.Addr(), mq.Config{Service: service()}, nats.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	publish(t, p, message.New(topic, []byte("before")))

	proxy.Cut()
	testenv.Eventually(t, wait, func() bool {
		select {
		case <-p.Ready():
			return false
		default:
			return true
		}
	}, "Ready still closed after the cut")
	for i := 0; i < 3; i++ {
		// Refused before it reaches the client (which would buffer or
		// wait for the link), not failed by it.
		_, err := p.Publish(context.Background(), message.New(topic, []byte("during")))
		require.ErrorIs(t, err, mq.ErrUnavailable)
		require.ErrorContains(t, err, "not connected", "publish went to the client while the link was cut")
	}

	proxy.Restore()
	ready(t, p)
	publish(t, p, message.New(topic, []byte("after")))
}

// ready waits until p is connected.
func ready(t *testing.T, p *nats.Provider) {
	t.Helper()
	select {
	case <-p.Ready():
	case <-time.After(wait):
		t.Fatal("not connected within", wait)
	}
}

// cut cuts the link of p and waits until p noticed.
func cut(t *testing.T, proxy *faultnet.Proxy, p *nats.Provider) {
	t.Helper()
	proxy.Cut()
	testenv.Eventually(t, wait, func() bool {
		select {
		case <-p.Ready():
			return false
		default:
			return true
		}
	}, "still connected after the cut")
}

// Cut the consumer's link: what was published meanwhile arrives after it
// comes back, on the same Consume channel, and so does what is published
// after; a delivery held across the cut is stale. (A message the server
// sent to the dying connection just before it noticed comes again after
// the ack wait, kept short here; so do acks lost with the link.)
func TestReconnectAndResume(t *testing.T) {
	url := testenv.NATS(t)
	proxy, err := faultnet.NewProxy(hostport(t, url))
	require.NoError(t, err)
	defer proxy.Close()
	svc := service()
	topic := svc + ".t"
	c := start(t, "nats://"+proxy.Addr(), mq.Config{Service: svc, Topics: []string{topic}},
		nats.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond), nats.WithAckWait(2*time.Second))
	pub := start(t, url, mq.Config{Service: service()})
	ch := consume(t, c)

	first := message.New(topic, []byte("first"))
	publish(t, pub, first)
	held, got := next(t, ch)
	require.Equal(t, first.UUID, got.UUID)
	require.False(t, held.(mq.Staler).Stale())

	for cut := 0; cut < 3; cut++ {
		proxy.Cut()
		testenv.Eventually(t, wait, func() bool { return held.(mq.Staler).Stale() }, "a delivery of a lost connection is not stale")
		during := message.New(topic, []byte("during"))
		publish(t, pub, during)
		proxy.Restore()
		until(t, ch, during.UUID)
		after := message.New(topic, []byte("after"))
		publish(t, pub, after)
		until(t, ch, after.UUID)
	}
}

// until acknowledges deliveries until the one of uuid. A delivery of a
// lost connection (one fetched before a cut and read after it: a
// redelivery of the held message, say) cannot be acknowledged any more:
// its Ack fails as unavailable, and the server delivers it again.
func until(t *testing.T, ch <-chan mq.Delivery, uuid string) {
	t.Helper()
	for {
		d, got := next(t, ch)
		if err := d.Ack(); err != nil {
			require.ErrorIs(t, err, mq.ErrUnavailable)
			require.True(t, d.(mq.Staler).Stale(), "an ack failed on a live delivery: %v", err)
			continue
		}
		if got.UUID == uuid {
			return
		}
	}
}

// A delivery held longer than the ack wait is extended, so it is not
// delivered again, until the maximum hold; then the server takes it back
// and it is stale.
func TestHoldExtendsUpToMaxHold(t *testing.T) {
	url := testenv.NATS(t)
	svc := service()
	topic := svc + ".t"
	// An ack wait of 3 s is extended every second: a stall of nearly 2 s
	// on a loaded machine still extends it in time.
	p := start(t, url, mq.Config{Service: svc, Topics: []string{topic}},
		nats.WithAckWait(3*time.Second), nats.WithMaxHold(9*time.Second))
	require.Equal(t, 9*time.Second, p.HoldLimit())
	ch := consume(t, p)
	m := message.New(topic, []byte("held"))
	publish(t, p, m)
	d, _ := next(t, ch)
	nothing(t, ch, 7*time.Second) // more than twice the ack wait: extended
	require.False(t, d.(mq.Staler).Stale())
	d2, got := next(t, ch) // past the maximum hold: delivered again
	require.Equal(t, m.UUID, got.UUID)
	require.True(t, d2.Redelivered())
	require.True(t, d.(mq.Staler).Stale())
	require.NoError(t, d2.Ack())
}

// A message past its TTL is dropped when its consumer reaches it.
func TestTTLDropsExpiredMessages(t *testing.T) {
	url := testenv.NATS(t)
	svc := service()
	topic := svc + ".ttl"
	p := start(t, url, mq.Config{Service: svc, Topics: []string{topic}})
	publish(t, p, message.New(topic, []byte("short"), message.WithTTL(50*time.Millisecond)))
	long := message.New(topic, []byte("long"), message.WithTTL(time.Hour))
	publish(t, p, long)
	<-time.After(200 * time.Millisecond) // the subject: the short TTL passes before anyone consumes
	ch := consume(t, p)
	d, got := next(t, ch)
	require.Equal(t, long.UUID, got.UUID)
	require.NoError(t, d.Ack())
}

// A publish may follow an unconfirmed one of the same connection; after
// the connection was replaced it may not, unless the earlier one is
// confirmed.
func TestPublishAfterAcrossReconnect(t *testing.T) {
	url := testenv.NATS(t)
	proxy, err := faultnet.NewProxy(hostport(t, url))
	require.NoError(t, err)
	defer proxy.Close()
	svc := service()
	topic := svc + ".t"
	start(t, url, mq.Config{Service: svc, Topics: []string{topic}})
	p := start(t, "nats://"+proxy.Addr(), mq.Config{Service: service()}, nats.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	enc := func(m *message.Message) []byte {
		b, err := message.Marshal(m)
		require.NoError(t, err)
		return b
	}
	m1 := message.New(topic, []byte("1"))
	c1, err := p.PublishEncodedAfter(ctx, nil, m1, enc(m1))
	require.NoError(t, err)
	m2 := message.New(topic, []byte("2"))
	c2, err := p.PublishEncodedAfter(ctx, c1, m2, enc(m2))
	require.NoError(t, err)
	require.NoError(t, c2.Wait(ctx))

	cut(t, proxy, p)
	proxy.Restore()
	ready(t, p)
	m3 := message.New(topic, []byte("3"))
	c3, err := p.PublishEncodedAfter(ctx, c2, m3, enc(m3)) // c2 is confirmed
	require.NoError(t, err)
	require.NoError(t, c3.Wait(ctx))

	// A publish cut off before its ack cannot be followed on the next
	// connection: it may not be stored, and would be sent again after.
	m4 := message.New(topic, []byte("4"))
	c4, err := p.PublishEncodedAfter(ctx, c3, m4, enc(m4))
	require.NoError(t, err)
	proxy.Cut()
	err = c4.Wait(ctx) // the ack may have come back before the cut
	require.True(t, err == nil || errors.Is(err, mq.ErrUnavailable), "Wait = %v", err)
	cut(t, proxy, p)
	proxy.Restore()
	ready(t, p)
	m5 := message.New(topic, []byte("5"))
	_, err5 := p.PublishEncodedAfter(ctx, c4, m5, enc(m5))
	if err != nil {
		require.ErrorIs(t, err5, mq.ErrOutOfOrder)
	} else {
		require.NoError(t, err5)
	}
}
