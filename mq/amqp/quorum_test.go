package amqp_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/mq/mqtest"
)

// The provider passes the conformance suite with quorum queues too, on the
// local node (a cluster of one).
func TestConformanceQuorum(t *testing.T) {
	url := testenv.AMQP(t)
	mqtest.Run(t, mqtest.Harness{
		New:      func(t *testing.T) mq.IProvider { return amqp.NewProvider(url, amqp.WithQuorumQueues()) },
		Service:  func(t *testing.T) string { return testenv.Service(t, nil) },
		Declared: func(t *testing.T, cfg mq.Config) { testenv.DropQueues(t, amqp.Queues(cfg)...) },
	})
}

// WithQuorumQueues declares the service's durable queues, the shard queues
// included, as quorum queues; a queue that exists as a classic one is
// refused with an error that says what to do.
func TestQuorumQueuesAreDeclared(t *testing.T) {
	url := testenv.AMQP(t)
	svc := testenv.Service(t, nil)
	cfg := mq.Config{Service: svc, Topics: []string{svc + ".t"}, Ordered: []string{svc + ".o"}, Prefetch: 4, Logger: quiet()}
	testenv.DropQueues(t, amqp.Queues(cfg)...)
	p := amqp.NewProvider(url, amqp.WithQuorumQueues())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Init(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range amqp.Queues(cfg) {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		// Declaring it as a classic queue must clash with what exists.
		_, err = ch.QueueDeclare(q, true, false, false, false, amqp091.Table{"x-queue-type": "classic"})
		var ae *amqp091.Error
		if !errors.As(err, &ae) || ae.Code != amqp091.PreconditionFailed {
			t.Fatalf("queue %s: declaring it classic gave %v; want PRECONDITION_FAILED, as it is a quorum queue", q, err)
		}
	}

	classic := testenv.Service(t, nil)
	ccfg := mq.Config{Service: classic, Topics: []string{classic + ".t"}, Prefetch: 4, Logger: quiet()}
	testenv.DropQueues(t, amqp.Queues(ccfg)...)
	c := amqp.NewProvider(url)
	if err := c.Init(ctx, ccfg); err != nil {
		t.Fatal(err)
	}
	c.Close()
	q := amqp.NewProvider(url, amqp.WithQuorumQueues())
	err = q.Init(ctx, ccfg)
	q.Close()
	if err == nil || !strings.Contains(err.Error(), "classic queue cannot become a quorum queue") || !strings.Contains(err.Error(), "final."+classic) {
		t.Fatalf("Init over classic queues: %v; want an error naming the queue and saying what to do", err)
	}
}
