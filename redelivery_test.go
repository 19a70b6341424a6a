package final_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// A message whose handling kills its consumer before the ack comes back
// again and again; it is dead-lettered after MaxRedeliveries redeliveries,
// without calling its handler once more. The "crash" here is the
// consumer's broker link cut inside the handler: the ack is lost, the
// broker redelivers, as after a process crash. Classic queues are counted
// by the bus in the database, quorum queues by the broker.
func TestMessageThatKeepsCrashingItsConsumerIsDeadLettered(t *testing.T) {
	for _, quorum := range []bool{false, true} {
		t.Run(fmt.Sprintf("quorum=%v", quorum), func(t *testing.T) {
			e := newEnv(t)
			topic := e.svc + ".t"
			testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Topics: []string{topic}})...)
			link, err := faultnet.NewProxy(testenv.Hostport(e.url))
			require.NoError(t, err)
			t.Cleanup(link.Close)
			var popts []amqp.Option
			if quorum {
				popts = append(popts, amqp.WithQuorumQueues())
			}
			var calls atomic.Int64
			crashed := make(chan struct{}) // a "crashed" handler never returns while the test runs
			popts = append(popts, amqp.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond))
			b := final.New(e.svc, e.db, amqp.NewProvider("amqp://guest:guest@"+link.Addr()+"/", popts...),
				testOptions(t).WithMaxRedeliveries(3))
			b.Subscribe(topic).Handler(func(c *final.Context) error {
				calls.Add(1)
				link.Cut() // the consumer "crashes" before its ack
				link.Restore()
				<-crashed
				return nil
			})
			require.NoError(t, b.Start())
			t.Cleanup(func() { require.NoError(t, b.Shutdown()) })
			t.Cleanup(func() { close(crashed) }) // runs before the Shutdown above
			pub := e.start(e.svc, e.url, testOptions(t), nil)
			require.NoError(t, pub.Publish(topic, []byte("crasher")))

			var reason string
			testenv.Eventually(t, 60*time.Second, func() bool {
				require.LessOrEqual(t, calls.Load(), int64(4), "handled again after MaxRedeliveries")
				for _, d := range e.deadLetters() {
					reason, _ = d.Headers[amqp.HeaderDeadReason].(string)
					return true
				}
				return false
			}, "dead-lettered after its redeliveries (handler calls so far: %d)", calls.Load())
			require.Equal(t, int64(4), calls.Load(), "the first delivery and 3 redeliveries")
			require.Contains(t, reason, "delivered 5 times without an acknowledgement")
			if !quorum {
				testenv.Eventually(t, 10*time.Second, func() bool {
					var n int
					require.NoError(t, e.db.QueryRow("SELECT COUNT(*) FROM final_redeliveries WHERE outbox_table = ?",
						"final_"+e.svc+"_outbox").Scan(&n))
					return n == 0
				}, "the count goes with the message")
			}
		})
	}
}
