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
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
)

// orderLog records, per key, the sequence numbers in the order they were
// handled, and notices two handlers of one key running at once.
type orderLog struct {
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
		time.Sleep(100 * time.Microsecond) // a handler that takes a moment, so overlaps would show
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

func TestOrderedPerKeyAcrossInstancesWithPoison(t *testing.T) {
	const (
		keys      = 1000
		perKey    = 20
		poisonKey = "key-17"
		poisonSeq = 5
	)
	e := newEnv(t)
	topic := e.svc + ".ordered"
	log := &orderLog{seqs: map[string][]int{}, running: map[string]bool{}, byInstance: map[int]int{}}
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
