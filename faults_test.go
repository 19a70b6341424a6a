package final_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
)

// produce commits business rows with messages from n goroutines until ctx
// ends, and returns how many commits failed.
func produce(ctx context.Context, b *final.Bus, e *env, table, topic string, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_ = publishTx(b, e.db, table, topic, fmt.Sprintf("w%d-%d", w, i), nil)
			}
		}()
	}
	return &wg
}

// The link between the bus and RabbitMQ is cut three times for 1.5s under
// load, for both publishing and consuming: every committed message must
// arrive and the outbox must end empty.
func TestBrokerLinkCutUnderLoad(t *testing.T) {
	e := newEnv(t)
	table := e.business()
	topic := e.svc + ".created"
	proxy, err := faultnet.NewProxy(testenv.Hostport(e.url))
	require.NoError(t, err)
	defer proxy.Close()
	viaProxy := "amqp://guest:guest@" + proxy.Addr() + "/"

	rec := newRecorder()
	opt := testOptions(t).WithPublishTimeout(2*time.Second).WithOutboxLease(4*time.Second).
		WithOutboxRetry(50*time.Millisecond, time.Second)
	b := e.start(e.svc, viaProxy, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	ctx, stop := context.WithCancel(context.Background())
	wg := produce(ctx, b, e, table, topic, 4)
	var cuts atomic.Int64
	for i := 0; i < 3; i++ {
		waitCommitted(t, e, table, 300*(i+1))
		proxy.Cut()
		cuts.Add(1)
		time.Sleep(1500 * time.Millisecond) // the length of the outage, not synchronisation
		proxy.Restore()
	}
	waitCommitted(t, e, table, 1200)
	stop()
	wg.Wait()
	faultEnded := time.Now()

	committed := e.committedRefs(table)
	rec.waitAll(t, committed, 60*time.Second)
	recovered := time.Since(faultEnded)
	testenv.Eventually(t, 20*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty")
	got := rec.tally(committed)
	t.Logf("broker-cut case: cuts=%d %s outbox_left=%d all_delivered_after=%s", cuts.Load(), got, e.outboxRows(), recovered.Round(time.Millisecond))
	require.Zero(t, got.lost)
	require.Zero(t, got.phantom)
}

func waitCommitted(t *testing.T, e *env, table string, n int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() bool {
		var c int
		_ = e.db.QueryRow("SELECT COUNT(*) FROM `" + table + "`").Scan(&c)
		return c >= n
	}, "%d commits", n)
}
