package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// rawStackResult is the database and the broker doing, without the
// library, the least that an outbox makes them do.
type rawStackResult struct {
	commitTx float64 // transactions committed per second while producing
	e2eTx    float64 // transactions per second until the raw consumer had every message
	loadMsgs float64 // messages consumed per second while the producers ran
}

// rawStack runs n producers that commit the raw database transaction (a
// business insert and perTx inserts into a table of the outbox's shape)
// and then queue its messages for one goroutine that publishes them with
// amqp091-go alone: persistent and mandatory, with the library's
// properties, pipelined on one confirming channel. A raw consumer on its
// own connection acks every delivery.
//
// The rows are never deleted and nothing is tracked: it is the database's
// transaction plus the broker's publish, confirm, delivery and ack, on the
// same cores, with the library's pipeline but none of its bookkeeping. An
// outbox does all of that and more, so it cannot do materially better: this
// is the limit an outbox can approach on this machine, not a rival design.
// (The two differ in one way: a full queue here blocks the producers,
// where the library leaves rows to its relay.)
func (e *benchEnv) rawStack(n, perTx int, d time.Duration) (rawStackResult, error) {
	e.settle()
	pipe, err := e.openRawPipe("bench.rawstack")
	if err != nil {
		return rawStackResult{}, err
	}
	defer pipe.close()
	topic, got := pipe.topic, &pipe.got
	pub, err := pipe.pub.Channel()
	if err != nil {
		return rawStackResult{}, err
	}
	if err := pub.Confirm(false); err != nil {
		return rawStackResult{}, err
	}

	raw, err := e.prepareRaw()
	if err != nil {
		return rawStackResult{}, err
	}
	defer raw.close()
	body := e.body(topic, 0)

	// As in the library: producers hand their committed messages to one
	// publishing goroutine (waiting only when 8192 are queued), and another
	// goroutine waits for the confirms in publish order.
	ids := make(chan string, 8192)
	pending := make(chan *amqp091.DeferredConfirmation, 8192)
	var nacked atomic.Int64
	var pubErr error
	var loops sync.WaitGroup
	loops.Add(2)
	go func() {
		defer loops.Done()
		defer close(pending)
		for id := range ids {
			if pubErr != nil {
				continue // drain, so that producers never block
			}
			dc, err := pub.PublishWithDeferredConfirmWithContext(context.Background(), "final", topic, true, false, amqp091.Publishing{
				ContentType:  "application/x-msgpack",
				DeliveryMode: amqp091.Persistent,
				MessageId:    id,
				Timestamp:    time.Now(),
				Type:         topic,
				Body:         body,
			})
			if err != nil {
				pubErr = err
				continue
			}
			pending <- dc
		}
	}()
	go func() {
		defer loops.Done()
		for dc := range pending {
			if !dc.Wait() {
				nacked.Add(1)
			}
		}
	}()

	var seq atomic.Int64

	start := time.Now()
	commits, took := produce(n, d, 0, func(int) error {
		if err := raw.commit(body, perTx); err != nil {
			return err
		}
		for k := 0; k < perTx; k++ {
			ids <- strconv.FormatInt(seq.Add(1), 10)
		}
		return nil
	})
	underLoad := got.Load()
	close(ids)
	loops.Wait()
	if pubErr != nil {
		return rawStackResult{}, fmt.Errorf("raw stack: publish: %w", pubErr)
	}
	want := commits * int64(perTx)
	deadline := time.Now().Add(2 * time.Minute)
	for got.Load() < want {
		if time.Now().After(deadline) {
			return rawStackResult{}, fmt.Errorf("raw stack: consumer got %d of %d", got.Load(), want)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	e2e := time.Since(start)
	if k := nacked.Load(); k > 0 {
		return rawStackResult{}, fmt.Errorf("raw stack: %d publishes nacked", k)
	}
	return rawStackResult{
		commitTx: float64(commits) / took.Seconds(),
		e2eTx:    float64(commits) / e2e.Seconds(),
		loadMsgs: float64(underLoad) / took.Seconds(),
	}, nil
}
