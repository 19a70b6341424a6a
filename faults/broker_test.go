package faults

import (
	"context"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/internal/testenv"
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
	nc, err := natsgo.Connect(url, natsgo.Timeout(5*time.Second), natsgo.NoReconnect())
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
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
