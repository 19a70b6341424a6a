package final_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
)

// logSignal is a slog.Handler that passes records on to next and closes a
// channel the first time a record's message contains a given text: a test
// waits on it for something the bus does without another visible effect.
type logSignal struct {
	next slog.Handler
	text string
	once *sync.Once
	seen chan struct{}
}

func newLogSignal(next slog.Handler, text string) logSignal {
	return logSignal{next: next, text: text, once: &sync.Once{}, seen: make(chan struct{})}
}

func (l logSignal) Enabled(ctx context.Context, lv slog.Level) bool { return true }

func (l logSignal) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.text) {
		l.once.Do(func() { close(l.seen) })
	}
	if !l.next.Enabled(ctx, r.Level) {
		return nil
	}
	return l.next.Handle(ctx, r)
}

func (l logSignal) WithAttrs(as []slog.Attr) slog.Handler {
	l.next = l.next.WithAttrs(as)
	return l
}

func (l logSignal) WithGroup(name string) slog.Handler {
	l.next = l.next.WithGroup(name)
	return l
}

// staleEnv starts a consumer bus whose broker link runs through a proxy the
// test cuts, and a publisher on the direct link.
func staleEnv(t *testing.T, opt final.Options, signal string, h final.HandlerFunc) (*env, *faultnet.Proxy, *final.Bus, logSignal) {
	e := newEnv(t)
	link, err := faultnet.NewProxy(testenv.Hostport(e.url))
	require.NoError(t, err)
	t.Cleanup(link.Close)
	sig := newLogSignal(opt.Logger.Handler(), signal)
	opt.Logger = slog.New(sig)
	e.start(e.svc, "amqp://guest:guest@"+link.Addr()+"/", opt, func(b *final.Bus) {
		b.Subscribe(e.svc + ".t").Handler(h)
	})
	pub := e.start(e.svc, e.url, testOptions(t), nil)
	return e, link, pub, sig
}

// A handler fails, and while the delivery waits for its retry the
// consumer's connection is lost: the broker redelivers the message (here to
// the same instance, once reconnected; with several instances, maybe to
// another). The waiting retry must not call the handler again: that would
// handle the message twice, and for an Ordered topic beside its own
// redelivery's successors.
func TestRetryIsDroppedWhenTheBrokerTookTheDeliveryBack(t *testing.T) {
	var (
		calls     atomic.Int64
		retried   = make(chan int, 1) // Attempt of a call after the first
		firstDone = make(chan struct{})
	)
	opt := testOptions(t).WithRetryCount(3).WithRetryInterval(2 * time.Second)
	e, link, pub, sig := staleEnv(t, opt, "not retried here", func(c *final.Context) error {
		if calls.Add(1) == 1 {
			close(firstDone)
			return errors.New("first call fails")
		}
		select {
		case retried <- c.Attempt:
		default:
		}
		return nil
	})
	require.NoError(t, pub.Publish(e.svc+".t", []byte("x")))
	<-firstDone
	link.Cut() // during the first retry's wait (1-2 s)
	link.Restore()

	select {
	case <-sig.seen: // the waiting retry saw the delivery was taken back
	case a := <-retried:
		if a > 1 {
			t.Fatalf("the handler was retried (attempt %d) on a delivery the broker had taken back", a)
		}
		// The redelivery (attempt 1) came first; the retry must still be dropped.
		select {
		case <-sig.seen:
		case a := <-retried:
			t.Fatalf("the handler was retried (attempt %d) on a delivery the broker had taken back", a)
		case <-time.After(30 * time.Second):
			t.Fatal("the waiting retry never ended")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("neither a retry nor its drop within 30s")
	}
	// The redelivered copy is handled, as attempt 1 of a new delivery.
	testenv.Eventually(t, 30*time.Second, func() bool { return calls.Load() >= 2 }, "redelivery handled")
	require.Equal(t, int64(2), calls.Load(), "the first call and the redelivery, no retry of the stale delivery")
}

// A handler's last attempt fails after the consumer's connection was lost:
// the broker redelivers the message, so the bus must not also dead-letter
// it (a copy in the dead-letter queue of a message that is handled).
func TestDeadLetterIsSkippedWhenTheBrokerTookTheDeliveryBack(t *testing.T) {
	var (
		calls       atomic.Int64
		inFirst     = make(chan struct{})
		releaseFail = make(chan struct{})
		redelivered = make(chan struct{})
	)
	opt := testOptions(t).WithRetryCount(0)
	e, link, pub, sig := staleEnv(t, opt, "not dead-lettered here", func(c *final.Context) error {
		if calls.Add(1) == 1 {
			close(inFirst)
			<-releaseFail
			return errors.New("fails once the connection is gone")
		}
		close(redelivered)
		return nil
	})
	require.NoError(t, pub.Publish(e.svc+".t", []byte("x")))
	<-inFirst
	link.Cut()
	link.Restore()
	select {
	case <-redelivered: // reconnected: a dead-letter publish would now succeed
	case <-time.After(30 * time.Second):
		close(releaseFail)
		t.Fatal("no redelivery within 30s")
	}
	close(releaseFail)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-sig.seen:
			require.Empty(t, e.deadLetters(), "nothing dead-lettered")
			return
		case <-deadline:
			t.Fatal("the failed stale delivery was neither dropped nor dead-lettered")
		case <-time.After(20 * time.Millisecond): // polling interval
		}
		if dl := e.deadLetters(); len(dl) > 0 {
			t.Fatalf("a delivery the broker had taken back was dead-lettered (%d in the dead-letter queue) while its redelivery was handled", len(dl))
		}
	}
}
