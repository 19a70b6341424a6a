package faults

import (
	"context"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/mq/nats"
)

// broker is what the suite does differently on one broker. The processes of
// the suite's roles find theirs by name.
type broker struct {
	name string // in the report
	// setup prepares the suite's corner of the broker and returns its URL.
	setup func(t *testing.T) string
	// provider returns a provider for the suite's corner of the broker at
	// url, with the suite's settings.
	provider func(url string) mq.IProvider
	// drop deletes what the scene's service svc, subscribed to topic,
	// declared on the broker at url.
	drop func(url, svc, topic string)
}

var (
	rabbitMQ   = &broker{name: "RabbitMQ", setup: rabbitMQSetup, provider: rabbitMQProvider, drop: deleteQueues}
	natsBroker = &broker{name: "NATS", setup: natsSetup, provider: natsProvider, drop: dropStreams}
)

// brokers are those the suite runs on.
var brokers = []*broker{rabbitMQ, natsBroker}

func brokerNamed(name string) *broker {
	for _, b := range brokers {
		if b.name == name {
			return b
		}
	}
	return nil
}

// rabbitMQSetup creates the suite's vhost and returns its URL.
func rabbitMQSetup(t *testing.T) string {
	testenv.AMQP(t)
	if out, err := exec.Command("rabbitmqctl", "add_vhost", vhost).CombinedOutput(); err != nil && !strings.Contains(string(out), "already exists") {
		testenv.Unavailable(t, "rabbitmqctl add_vhost: %v: %s", err, out)
	}
	if out, err := exec.Command("rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl set_permissions: %v: %s", err, out)
	}
	return strings.TrimSuffix(testenv.AMQPURL(), "/") + "/" + vhost
}

func rabbitMQProvider(url string) mq.IProvider {
	return amqp.NewProvider(url, amqp.WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond))
}

func deleteQueues(url, svc, _ string) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete("final."+svc, false, false, false)
		_, _ = ch.QueueDelete("final."+svc+".dlq", false, false, false)
	}
}

// natsPrefix names the suite's subjects and streams on NATS, so that it
// shares nothing with the other tests of the server.
const natsPrefix = "faults"

// natsAckWait is the ack wait of the suite's consumers: the deliveries of
// a consumer that was killed, or whose link was cut, come back after it,
// so it is short for the scenarios to end soon (the default is 30s).
const natsAckWait = 2 * time.Second

func natsSetup(t *testing.T) string { return testenv.NATS(t) }

func natsProvider(url string) mq.IProvider {
	return nats.NewProvider(url, nats.WithPrefix(natsPrefix), nats.WithAckWait(natsAckWait),
		nats.WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond))
}

// dropStreams deletes the streams of svc subscribed to topic (its topic's
// and its dead letters'), and with them its consumers.
func dropStreams(url, svc, topic string) {
	js, done, err := testenv.JetStream(url, 5*time.Second)
	if err != nil {
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range nats.Streams(natsPrefix, mq.Config{Service: svc, Topics: []string{topic}}) {
		_ = js.DeleteStream(ctx, name)
	}
}

// hostport returns the host:port of a broker URL.
func hostport(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("broker URL %q has no host", rawURL)
	}
	return u.Host
}

// via returns rawURL with its host:port replaced by addr (a proxy's).
func via(t *testing.T, rawURL, addr string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// watchNATS lets the scene ask the NATS server at url about its stream
// and consumer: whether the consumer holds anything more for it, and what
// became of lost messages.
func (s *scene) watchNATS(url string) {
	s.drained = func() bool { return natsDrained(url, s.svc, s.topic) }
	s.explainLoss = func(lost []string) { explainNATSLoss(s.t, url, s.svc, s.topic, lost) }
}

// natsDrained reports whether the scene's consumer has nothing left to
// deliver or to be acknowledged.
func natsDrained(url, svc, topic string) bool {
	js, done, err := testenv.JetStream(url, 2*time.Second)
	if err != nil {
		return false
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, nats.Streams(natsPrefix, mq.Config{Service: svc, Topics: []string{topic}})[0], svc)
	if err != nil {
		return false
	}
	ci := c.CachedInfo()
	return ci.NumPending == 0 && ci.NumAckPending == 0
}

// explainNATSLoss logs, for messages lost on NATS, the state of the scene's
// stream and consumer and where each lost message is in the stream, if it
// is there: that tells a message the stream never stored (or dropped) from
// one its consumer skipped.
func explainNATSLoss(t *testing.T, url, svc, topic string, lost []string) {
	js, done, err := testenv.JetStream(url, 5*time.Second)
	if err != nil {
		t.Logf("explain: %v", err)
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := nats.Streams(natsPrefix, mq.Config{Service: svc, Topics: []string{topic}})[0]
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Logf("explain: stream %s: %v", name, err)
		return
	}
	si, _ := st.Info(ctx)
	if si != nil {
		t.Logf("explain: stream %s: msgs=%d first=%d last=%d deleted=%d consumers=%d", name, si.State.Msgs, si.State.FirstSeq, si.State.LastSeq,
			si.State.NumDeleted, si.State.Consumers)
	}
	if c, err := st.Consumer(ctx, svc); err == nil {
		ci := c.CachedInfo()
		t.Logf("explain: consumer %s: delivered=%d/%d ackfloor=%d/%d pending=%d ackpending=%d redelivered=%d waiting=%d",
			svc, ci.Delivered.Consumer, ci.Delivered.Stream, ci.AckFloor.Consumer, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending,
			ci.NumRedelivered, ci.NumWaiting)
	} else {
		t.Logf("explain: consumer %s: %v", svc, err)
	}
	want := map[string]bool{}
	for _, ref := range lost {
		want[ref] = true
	}
	if si == nil {
		return
	}
	for seq := si.State.FirstSeq; seq <= si.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if msg, err := message.Unmarshal(m.Data); err == nil && want[string(msg.Payload)] {
			t.Logf("explain: lost %s is in the stream at %d (msg id %s, stored %s)", msg.Payload, seq, m.Header.Get("Nats-Msg-Id"),
				m.Time.Format("15:04:05.000"))
		}
	}
}
