package final_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// orderLog records, per key, the sequence numbers in the order they were
// handled, and notices two handlers of one key running at once.
type orderLog struct {
	work       time.Duration // how long a handler takes
	mu         sync.Mutex
	seqs       map[string][]int
	running    map[string]bool
	concurrent int
	handled    int
	byInstance map[int]int
}

func (l *orderLog) handler(instance int, poisonKey string, poisonSeq int) final.HandlerFunc {
	return func(c *final.Context) error {
		key, seqText, _ := strings.Cut(string(c.Message.Payload), ":")
		seq, _ := strconv.Atoi(seqText)
		if key != c.Key {
			return fmt.Errorf("payload key %q, message key %q", key, c.Key)
		}
		l.mu.Lock()
		if l.running[key] {
			l.concurrent++
		}
		l.running[key] = true
		l.mu.Unlock()
		time.Sleep(l.work) // a handler that takes a moment, so overlaps would show
		l.mu.Lock()
		defer l.mu.Unlock()
		l.running[key] = false
		if key == poisonKey && seq == poisonSeq {
			return errors.New("poison")
		}
		l.seqs[key] = append(l.seqs[key], seq)
		l.handled++
		l.byInstance[instance]++
		return nil
	}
}

func newOrderLog(work time.Duration) *orderLog {
	return &orderLog{work: work, seqs: map[string][]int{}, running: map[string]bool{}, byInstance: map[int]int{}}
}

// orderedTopic names the test's ordered topic and deletes its shard queues
// when the test ends.
func orderedTopic(t *testing.T, e *env) string {
	topic := e.svc + ".ordered"
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{topic}})...)
	return topic
}

// firstDeliveryOrder counts, over all keys, the messages handled before
// every one of their predecessors had been (skips: order broken) and the
// messages handled again (replays). The caller holds l.mu.
func (l *orderLog) firstDeliveryOrder() (skips, replays int) {
	for _, seqs := range l.seqs {
		highest := -1 // every seq up to highest has been handled
		for _, seq := range seqs {
			switch {
			case seq > highest+1:
				skips++
			case seq <= highest:
				replays++
			default:
				highest = seq
			}
		}
	}
	return skips, replays
}

// cutWhenHandled cuts link for 300 ms each time the handled count reaches
// the next of at.
func (l *orderLog) cutWhenHandled(t *testing.T, link *faultnet.Proxy, at ...int) {
	t.Helper()
	for _, n := range at {
		testenv.Eventually(t, time.Minute, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.handled >= n
		}, "%d handled", n)
		link.Cut()
		time.Sleep(300 * time.Millisecond) // the length of the outage, not synchronisation
		link.Restore()
	}
}

func TestOrderedPerKeyAcrossInstancesWithPoison(t *testing.T) {
	const (
		keys      = 1000
		perKey    = 20
		poisonKey = "key-17"
		poisonSeq = 5
	)
	e := newEnv(t)
	topic := orderedTopic(t, e)
	log := newOrderLog(100 * time.Microsecond)
	opt := testOptions(t).WithRetryCount(2).WithRetryInterval(50 * time.Millisecond)
	// Instance 0 starts first, so RabbitMQ makes it the active consumer of
	// every shard; it is stopped half way and instance 1 takes over.
	first := final.New(e.svc, e.db, amqp.NewProvider(e.url), opt)
	first.Subscribe(topic).Ordered().Handler(log.handler(0, poisonKey, poisonSeq))
	require.NoError(t, first.Start())
	t.Cleanup(func() { _ = first.Shutdown() })
	pub := e.start(e.svc, e.url, opt, func(b *final.Bus) {
		b.Subscribe(topic).Ordered().Handler(log.handler(1, poisonKey, poisonSeq))
	})
	start := time.Now()
	published := make(chan error, 1)
	go func() { // publishing goes on while instance 0 is stopped
		published <- func() error {
			for seq := 0; seq < perKey; seq++ {
				for batch := 0; batch < keys; batch += 500 {
					tx, err := e.db.Begin()
					if err != nil {
						return err
					}
					err = pub.Transaction(tx, func(txBus *final.TxBus) error {
						for k := batch; k < batch+500; k++ {
							key := fmt.Sprintf("key-%d", k)
							if err := txBus.Publish(topic, []byte(fmt.Sprintf("%s:%d", key, seq)), message.WithKey(key)); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						return err
					}
				}
			}
			return nil
		}()
	}()
	want := keys*perKey - 1
	testenv.Eventually(t, time.Minute, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled >= want/2
	}, "half the messages handled")
	log.mu.Lock()
	atStop := log.handled
	log.mu.Unlock()
	stopStart := time.Now()
	require.NoError(t, first.Shutdown())
	log.mu.Lock()
	t.Logf("instance 0 stopped in %s; handled %d when asked, %d when stopped", time.Since(stopStart).Round(time.Millisecond), atStop, log.handled)
	log.mu.Unlock()
	require.NoError(t, <-published)
	testenv.Eventually(t, 2*time.Minute, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled >= want
	}, "%d messages handled", want)
	took := time.Since(start)

	log.mu.Lock()
	defer log.mu.Unlock()
	outOfOrder := 0
	for key, seqs := range log.seqs {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				outOfOrder++
			}
		}
		wantLen := perKey
		if key == poisonKey {
			wantLen--
		}
		require.Len(t, seqs, wantLen, "key %s", key)
	}
	t.Logf("ordered: messages=%d keys=%d handled=%d out_of_order=%d same_key_overlaps=%d dead_lettered=1 by_instance=%v took=%s",
		keys*perKey, keys, log.handled, outOfOrder, log.concurrent, log.byInstance, took.Round(time.Millisecond))
	require.Zero(t, outOfOrder)
	require.Zero(t, log.concurrent, "two messages of one key were handled at once")
	require.Positive(t, log.byInstance[0])
	require.Positive(t, log.byInstance[1], "the second instance took over the shards")
	require.Equal(t, []int{0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, log.seqs[poisonKey],
		"the poison key moved on after its dead letter")
	testenv.Eventually(t, 10*time.Second, func() bool { return len(e.deadLetters()) == 1 }, "the poison message is dead-lettered")
}

// Cutting an ordered consumer's link mid-stream: the broker redelivers what
// was not acknowledged, so a key may replay from its last acknowledged
// message, but no message is ever handled before all of its predecessors.
// The messages still queued behind a busy key when the link goes are
// dropped rather than handled (they are redelivered anyway), which keeps
// the replay short.
func TestOrderedSurvivesLinkCuts(t *testing.T) {
	const keys, perKey = 4, 60 // few keys, slow handlers: keys' later messages wait in their lanes
	e := newEnv(t)
	topic := orderedTopic(t, e)
	link, err := faultnet.NewProxy(testenv.Hostport(e.url))
	require.NoError(t, err)
	defer link.Close()
	log := newOrderLog(5 * time.Millisecond)
	e.start(e.svc, "amqp://guest:guest@"+link.Addr()+"/", testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Ordered().Handler(log.handler(0, "", -1))
	})
	pub := e.start(e.svc, e.url, testOptions(t), nil)
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, pub.Transaction(tx, func(txBus *final.TxBus) error {
		for seq := 0; seq < perKey; seq++ {
			for k := 0; k < keys; k++ {
				key := fmt.Sprintf("key-%d", k)
				if err := txBus.Publish(topic, []byte(fmt.Sprintf("%s:%d", key, seq)), message.WithKey(key)); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	// Cut the link twice while the keys' queues are being worked through.
	log.cutWhenHandled(t, link, keys*10, keys*30)
	testenv.Eventually(t, time.Minute, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for k := 0; k < keys; k++ {
			s := log.seqs[fmt.Sprintf("key-%d", k)]
			if len(s) == 0 || s[len(s)-1] != perKey-1 {
				return false
			}
		}
		return true
	}, "every key reached its last message")

	log.mu.Lock()
	defer log.mu.Unlock()
	skips, replays := log.firstDeliveryOrder()
	t.Logf("ordered with 2 link cuts: messages=%d keys=%d handled=%d skipped_ahead=%d replayed=%d overlaps=%d",
		keys*perKey, keys, log.handled, skips, replays, log.concurrent)
	require.Zero(t, skips)
	require.Zero(t, log.concurrent)
	// A cut replays what was in flight: about one message per key. Were
	// the messages queued behind a busy key handled off the dead channel,
	// each would come back again (about 30 per key here).
	require.LessOrEqual(t, replays, keys*2*4, "replays after 2 cuts")
}

// The producer side keeps a key's order too: its link to the broker is cut
// while producers commit, so publishes fail and rows fall back to the
// relay, and a small dispatch queue overflows, leaving rows behind. Each
// key's messages are committed one after another, so their commit order is
// their order; no message may be handled for the first time before one
// committed ahead of it.
func TestProducerKeepsKeyOrderUnderFaults(t *testing.T) {
	const producers, keysEach, perKey = 8, 5, 60
	e := newEnv(t)
	topic := orderedTopic(t, e)
	link, err := faultnet.NewProxy(testenv.Hostport(e.url))
	require.NoError(t, err)
	defer link.Close()
	log := newOrderLog(0)
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Ordered().Handler(log.handler(0, "", -1))
	})
	opt := testOptions(t).
		WithDispatchQueueSize(4). // overflows under 8 producers: rows are left behind
		WithOutboxScanAgoTime(300 * time.Millisecond).
		WithOutboxScanInterval(50 * time.Millisecond).
		WithPublishTimeout(time.Second).
		WithOutboxLease(3 * time.Second)
	pub := e.start(e.svc, "amqp://guest:guest@"+link.Addr()+"/", opt, nil)
	var committed sync.WaitGroup
	errs := make(chan error, producers)
	for p := 0; p < producers; p++ {
		committed.Add(1)
		go func() {
			defer committed.Done()
			for seq := 0; seq < perKey; seq++ {
				for k := 0; k < keysEach; k++ {
					key := fmt.Sprintf("key-%d-%d", p, k)
					if err := pub.Publish(topic, []byte(fmt.Sprintf("%s:%d", key, seq)), message.WithKey(key)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	const total = producers * keysEach * perKey
	log.cutWhenHandled(t, link, total/5, total/2, 4*total/5)
	committed.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	testenv.Eventually(t, time.Minute, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for p := 0; p < producers; p++ {
			for k := 0; k < keysEach; k++ {
				got := map[int]bool{}
				for _, seq := range log.seqs[fmt.Sprintf("key-%d-%d", p, k)] {
					got[seq] = true
				}
				if len(got) != perKey {
					return false
				}
			}
		}
		return true
	}, "every message handled")
	testenv.Eventually(t, 30*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty")

	log.mu.Lock()
	defer log.mu.Unlock()
	skips, replays := log.firstDeliveryOrder()
	if skips > 0 {
		for key, seqs := range log.seqs {
			t.Logf("%s: %v", key, seqs)
		}
	}
	t.Logf("producer-side order with 3 link cuts and a 4-slot dispatch queue: messages=%d keys=%d handled=%d skipped_ahead=%d replayed=%d",
		total, producers*keysEach, log.handled, skips, replays)
	require.Zero(t, skips, "a message was handled before one committed ahead of it with the same key")
}
