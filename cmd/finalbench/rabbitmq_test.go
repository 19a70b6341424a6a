package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/internal/testenv"
)

// TestAMQPRawPipe runs a raw RabbitMQ pipe with two publishing channels
// against the local broker: their confirmed publishes all reach the raw
// consumer, and close deletes the pipe's queue. Its queue is its own, so
// it may run beside a benchmark.
func TestAMQPRawPipe(t *testing.T) {
	b := rabbitMQ{addr: testenv.AMQP(t)}
	var r [4]byte
	_, _ = rand.Read(r[:])
	tag := hex.EncodeToString(r[:])
	topic := "bench.testraw" + tag
	e := &benchEnv{cfg: config{broker: b, size: 64}}
	s := rawSettings{Window: 64, Prefetch: 16, Publishers: 2}
	var got rawCounter
	pipe, closePipe, err := e.openRawPipe(topic, s, &got)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pipe.publishers()); n != 2 {
		t.Fatalf("%d publishers, want 2", n)
	}
	const n = 500
	if _, err := rawPublishTo(pipe, n, func(i int) rawMsg { return rawMsg{id: fmt.Sprintf("%s-%d", tag, i), body: e.body(topic, uint64(i))} }); err != nil {
		t.Fatalf("raw publish: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the raw consumer got %d of %d", got.Load(), n)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	closePipe()

	conn, err := amqp091.Dial(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(topic, true, false, false, false, nil); err == nil {
		t.Fatalf("after close, queue %s still exists", topic)
	}
}
