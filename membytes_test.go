package final_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/memory"
)

// largeBacklog is the backlog of the large-message tests: count messages of
// size bytes. FINAL_LARGE_BACKLOG=600x1048576 runs the case of issue 11.
func largeBacklog(t *testing.T) (count, size int) {
	count, size = 200, 512<<10
	if v := os.Getenv("FINAL_LARGE_BACKLOG"); v != "" {
		_, err := fmt.Sscanf(v, "%dx%d", &count, &size)
		require.NoError(t, err, "FINAL_LARGE_BACKLOG = %q, want COUNTxBYTES", v)
	}
	return count, size
}

// heapPeak samples the Go heap in use until stop is called, which returns
// the highest sample.
func heapPeak() (stop func() uint64) {
	var (
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// Large messages committed while the producer's link to the broker is cut
// pile up in the outbox. The producer holds no more of them in memory than
// its byte budget allows, however many are committed, and once the link is
// back the backlog drains: each relay claim is small enough in bytes to be
// sent within its window.
func TestLargeMessagesDuringBrokerOutage(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(map[bool]string{false: "unkeyed", true: "keyed"}[keyed], func(t *testing.T) {
			count, size := largeBacklog(t)
			e := newEnv(t)
			topic := e.svc + ".large"
			link, err := faultnet.NewProxy(testenv.Hostport(e.url))
			require.NoError(t, err)
			defer link.Close()

			// The consumer is another service, so that its relay leaves the
			// producer's outbox alone.
			var (
				mu   sync.Mutex
				seen = map[string]int{}
			)
			consumer := testenv.Service(t, e.db)
			e.start(consumer, e.url, testOptions(t), func(b *final.Bus) {
				b.Subscribe(topic).Handler(func(c *final.Context) error {
					ref, _, _ := strings.Cut(string(c.Message.Payload[:32]), ":")
					mu.Lock()
					seen[ref]++
					mu.Unlock()
					return nil
				})
			})
			delivered := func() (distinct, total int) {
				mu.Lock()
				defer mu.Unlock()
				for _, n := range seen {
					total += n
				}
				return len(seen), total
			}

			opt := testOptions(t)
			pub := e.start(e.svc, "amqp://guest:guest@"+link.Addr()+"/", opt, nil)
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			heap := heapPeak()

			link.Cut()
			padding := bytes.Repeat([]byte{'.'}, size-32)
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < count; i += 4 {
						payload := append([]byte(fmt.Sprintf("%-31s", fmt.Sprintf("m%d:", i))+"."), padding...)
						var opts []message.PolicyOption
						if keyed {
							opts = append(opts, message.WithKey(fmt.Sprintf("key-%d", i%4)))
						}
						if err := pub.PublishContext(context.Background(), topic, payload, opts...); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			link.Restore()
			restored := time.Now()

			// Polled, not testenv.Eventually, to report what was seen either way.
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
				if n, _ := delivered(); n == count {
					break
				}
				time.Sleep(10 * time.Millisecond) // polling interval
			}
			drained := time.Since(restored)
			peak := heap()
			held, heldPeak := final.DispatcherBytes(pub)
			distinct, total := delivered()
			t.Logf("large backlog, keyed=%v: messages=%d size=%d delivered=%d duplicates=%d drained_after_restore=%s "+
				"dispatcher_bytes_peak=%dMiB (budget %dMiB) heap_inuse_peak=%dMiB (base %dMiB, growth %dMiB)",
				keyed, count, size, distinct, total-distinct, drained.Round(time.Millisecond),
				heldPeak>>20, opt.DispatchQueueBytes>>20, peak>>20, base.HeapInuse>>20, (peak-min(peak, base.HeapInuse))>>20)
			require.Equal(t, count, distinct, "messages delivered within 2 minutes of the link's return")
			testenv.Eventually(t, time.Minute, func() bool { return e.outboxRows() == 0 }, "outbox empty")
			// The budget, plus one message: the relay's row may go when
			// only parked rows are held.
			require.LessOrEqual(t, heldPeak, int64(opt.DispatchQueueBytes+size+1024), "bytes held by the dispatcher")
			testenv.Eventually(t, 10*time.Second, func() bool { held, _ = final.DispatcherBytes(pub); return held == 0 },
				"the dispatcher holds nothing once all is sent (holds %d bytes)", held)
		})
	}
}

func TestStartRefusesNoDispatchBytes(t *testing.T) {
	db := testenv.DB(t)
	for _, v := range []int{0, -1} {
		err := final.New("svc", db, memory.NewBroker().Provider(), testOptions(t).WithDispatchQueueBytes(v)).Start()
		require.ErrorIs(t, err, final.ErrInvalidOption)
		require.ErrorContains(t, err, "DispatchQueueBytes")
	}
}
