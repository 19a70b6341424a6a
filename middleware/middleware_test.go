package middleware_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/middleware"
	"github.com/finalbus/final/mq/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run starts a bus on the in-memory broker with one subscription to topic
// "t" built from chain, publishes m and returns the broker and service.
func run(t *testing.T, opt final.Options, m *message.Message, chain ...final.HandlerFunc) (*memory.Broker, string) {
	db := testenv.DB(t)
	svc := testenv.Service(t, db)
	broker := memory.NewBroker()
	b := final.New(svc, db, broker.Provider(), opt)
	b.Subscribe("t").Middleware(chain[:len(chain)-1]...).Handler(chain[len(chain)-1])
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })
	require.NoError(t, b.PublishMessage(m))
	return broker, svc
}

func TestTimeoutEndsTheHandlersContext(t *testing.T) {
	opt := final.DefaultOptions().WithRetryCount(0)
	done := make(chan error, 1)
	broker, svc := run(t, opt, message.New("t", []byte("slow")), middleware.Timeout(20*time.Millisecond),
		func(c *final.Context) error {
			<-c.Context().Done() // a handler that honours its context
			done <- c.Context().Err()
			return c.Context().Err()
		})
	require.ErrorIs(t, <-done, context.DeadlineExceeded)
	testenv.Eventually(t, 10*time.Second, func() bool { return len(broker.DeadLetters(svc)) == 1 }, "timed-out message dead-lettered")
	require.Contains(t, broker.DeadLetters(svc)[0].Reason, "deadline exceeded")
}

func TestCorrelationIDFromHeaderOrUUIDAndPropagated(t *testing.T) {
	got := make(chan *message.Message, 2)
	handler := func(c *final.Context) error {
		out := middleware.Propagate(c.Context(), message.New("next", nil))
		got <- out
		return nil
	}
	withHeader := message.New("t", nil)
	withHeader.Header.Set(middleware.HeaderCorrelationID, "corr-1")
	run(t, final.DefaultOptions(), withHeader, middleware.CorrelationID(), handler)
	require.Equal(t, "corr-1", (<-got).Header.GetString(middleware.HeaderCorrelationID))

	first := message.New("t", nil)
	run(t, final.DefaultOptions(), first, middleware.CorrelationID(), handler)
	require.Equal(t, first.UUID, (<-got).Header.GetString(middleware.HeaderCorrelationID), "the first message of a chain starts it")

	require.Empty(t, middleware.CorrelationIDFrom(context.Background()))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLoggingLogsOutcomes(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opt := final.DefaultOptions().WithRetryCount(1).WithRetryInterval(time.Millisecond)
	calls := make(chan struct{}, 2)
	run(t, opt, message.New("t", []byte("x")), middleware.Logging(logger), func(c *final.Context) error {
		calls <- struct{}{}
		if c.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	})
	<-calls
	<-calls
	testenv.Eventually(t, 10*time.Second, func() bool { return strings.Contains(buf.String(), "final: handled") }, "success logged")
	out := buf.String()
	require.Contains(t, out, "level=WARN msg=\"final: handler failed\"")
	require.Contains(t, out, "first attempt fails")
	require.Contains(t, out, "level=DEBUG msg=\"final: handled\"")
}

// Throttle with a rate or burst it cannot honour lets nothing through: each
// message is dead-lettered at once with the reason, instead of reaching the
// handler unthrottled.
func TestThrottleRefusesInvalidArguments(t *testing.T) {
	for _, tc := range []struct {
		perSecond float64
		burst     int
		reason    string
	}{
		{0, 1, "perSecond = 0, want > 0"},
		{-5, 1, "perSecond = -5, want > 0"},
		{10, -1, "burst = -1, want >= 0"},
	} {
		var handled atomic.Int32
		broker, svc := run(t, final.DefaultOptions(), message.New("t", []byte("x")), middleware.Throttle(tc.perSecond, tc.burst),
			func(c *final.Context) error { handled.Add(1); return nil })
		testenv.Eventually(t, 10*time.Second, func() bool { return len(broker.DeadLetters(svc)) == 1 },
			"Throttle(%v, %d): message not dead-lettered (handled %d times)", tc.perSecond, tc.burst, handled.Load())
		require.Contains(t, broker.DeadLetters(svc)[0].Reason, tc.reason)
		require.Zero(t, handled.Load(), "Throttle(%v, %d) let a message through", tc.perSecond, tc.burst)
	}
}
