package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// rawStackResult is the database and the broker doing, without the
// library, the least that an outbox makes them do.
type rawStackResult struct {
	commitTx float64  // transactions committed per second while producing
	e2eTx    float64  // transactions per second until the raw consumer had every message
	loadMsgs float64  // messages consumed per second while the producers ran
	lat      latency  // commit to the raw consumer's delivery, as the library's is measured
	tr       *tracker // the round's commits and deliveries, kept only under -latency-log (keepFor)
}

// stackWindow bounds, in rawStack, the committed messages queued for the
// publishers. (The confirms outstanding are the raw settings' window.)
const stackWindow = 8192

// rawStack runs n producers (paced to rate tx/s when rate > 0) that commit
// the raw database transaction (a
// business insert and perTx inserts into a table of the outbox's shape)
// and then queue its messages for the publishers, which publish them with
// the broker's client library alone, as the provider sends them (AMQP:
// persistent and mandatory, with the library's properties; JetStream: the
// library's headers, Nats-Msg-Id included, to a stream declared as the
// provider declares it), pipelined on one connection. A raw consumer on its
// own connection acks every delivery. The window, the prefetch and the
// publishers are the raw settings (e.raw): the sweep's best, not the
// library's.
//
// The rows are never deleted and nothing is tracked: it is the database's
// transaction plus the broker's publish, confirm, delivery and ack, on the
// same cores, with the library's pipeline but none of its bookkeeping. An
// outbox does all of that and more, so it cannot do materially better: this
// is the limit an outbox can approach on this machine, not a rival design.
// (The two differ in one way: a full queue here blocks the producers,
// where the library leaves rows to its relay.)
func (e *benchEnv) rawStack(n, perTx int, d time.Duration, rate float64) (rawStackResult, error) {
	e.settle()
	tr := newTracker()
	got := rawCounter{seen: func(id string) {
		if seq, err := strconv.ParseUint(id, 10, 64); err == nil {
			tr.delivered(seq, time.Now())
		}
	}}
	pipe, closePipe, err := e.openRawPipe("bench.rawstack", e.raw, &got)
	if err != nil {
		return rawStackResult{}, err
	}
	defer closePipe()

	raw, err := e.prepareRaw(perTx)
	if err != nil {
		return rawStackResult{}, err
	}
	defer raw.close()
	body := e.body("bench.rawstack", 0)

	// As in the library: producers hand their committed messages to the
	// publishing goroutines (waiting only when stackWindow are queued),
	// and for each publisher another goroutine waits for the confirms in
	// publish order.
	ids := make(chan string, stackWindow)
	pubs := pipe.publishers()
	if len(pubs) == 0 { // the producers would wait for them forever
		return rawStackResult{}, fmt.Errorf("raw stack: no publishers (raw settings %s)", e.raw)
	}
	pubErrs := make([]error, len(pubs)) // a publisher's first error, its own slot
	var nacked atomic.Int64
	var loops sync.WaitGroup
	for k, pub := range pubs {
		pending := make(chan func() error, pipe.settings().Window)
		loops.Add(2)
		go func() {
			defer loops.Done()
			defer close(pending)
			for id := range ids {
				if pubErrs[k] != nil {
					continue // drain, so that producers never block
				}
				confirm, err := pub.publish(rawMsg{id: id, body: body})
				if err != nil {
					pubErrs[k] = err
					continue
				}
				pending <- confirm
			}
		}()
		go func() {
			defer loops.Done()
			for confirm := range pending {
				if confirm() != nil {
					nacked.Add(1)
				}
			}
		}()
	}

	var seq atomic.Uint64

	start := time.Now()
	tr.start = start
	commits, took := produce(n, d, rate, func(int) error {
		if err := raw.commit(body, perTx); err != nil {
			return err
		}
		seqs := make([]uint64, perTx)
		for k := range seqs {
			seqs[k] = seq.Add(1)
		}
		tr.committed(seqs, time.Now()) // before the publish: the consumer looks it up
		for _, s := range seqs {
			ids <- strconv.FormatUint(s, 10)
		}
		return nil
	})
	underLoad := got.Load()
	close(ids)
	loops.Wait()
	if err := errors.Join(pubErrs...); err != nil {
		return rawStackResult{}, fmt.Errorf("raw stack: publish: %w", err)
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
		return rawStackResult{}, fmt.Errorf("raw stack: %d publishes nacked or failed", k)
	}
	return rawStackResult{
		commitTx: float64(commits) / took.Seconds(),
		e2eTx:    float64(commits) / e2e.Seconds(),
		loadMsgs: float64(underLoad) / took.Seconds(),
		lat:      tr.latency(),
		tr:       keepFor(e.cfg.latencyLog, tr),
	}, nil
}
