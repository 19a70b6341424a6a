package main

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

type latency struct{ p50, p99, max float64 } // milliseconds

type libResult struct {
	commitTx float64 // transactions committed per second while producing
	e2eTx    float64 // transactions per second until every message was handled (the outbox's emptying is checked, not timed)
	loadMsgs float64 // messages handled per second while the producers ran (delivery catches up after they stop)
	dups     int64   // deliveries of a message already handled, until the end-to-end mark
	lost     int64   // committed messages not handled at the end-to-end mark (the phase fails if any is still missing after 2 minutes)
	lat      latency
	msgs     int64    // messages committed
	readBack int64    // rows the overflow read back from the table (see paths)
	relayed  int64    // the relay's claims of rows (a row claimed again counts again)
	tr       *tracker // the round's commits and deliveries, kept only under -latency-log (keepFor)
}

// tracker records when each message's transaction committed and when its
// first delivery arrived.
type tracker struct {
	mu       sync.Mutex
	start    time.Time // the producers' start, for writeLog
	commit   map[uint64]time.Time
	recv     map[uint64]time.Time
	received atomic.Int64 // distinct messages delivered
	dups     atomic.Int64 // deliveries of a message already delivered
	watch    *flight      // -flight-lag: told each first delivery's latency; nil: none
}

func newTracker() *tracker {
	return &tracker{commit: map[uint64]time.Time{}, recv: map[uint64]time.Time{}}
}

func (t *tracker) committed(seqs []uint64, at time.Time) {
	t.mu.Lock()
	for _, s := range seqs {
		t.commit[s] = at
	}
	t.mu.Unlock()
}

func (t *tracker) handle(c *final.Context) error {
	t.delivered(binary.BigEndian.Uint64(c.Message.Payload), time.Now())
	return nil
}

// delivered records a delivery of message seq at now.
func (t *tracker) delivered(seq uint64, now time.Time) {
	t.mu.Lock()
	if _, dup := t.recv[seq]; !dup {
		t.recv[seq] = now
		t.received.Add(1)
		if t.watch != nil { // -flight-lag only: no lookup on every delivery otherwise
			if c, ok := t.commit[seq]; ok {
				t.watch.observe(now.Sub(c))
			}
		}
	} else {
		t.dups.Add(1)
	}
	t.mu.Unlock()
}

// lost counts the committed messages not delivered, as bench/peers counts
// them.
func (t *tracker) lost() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for seq := range t.commit {
		if _, ok := t.recv[seq]; !ok {
			n++
		}
	}
	return n
}

func (t *tracker) latency() latency {
	t.mu.Lock()
	defer t.mu.Unlock()
	ds := make([]float64, 0, len(t.recv))
	for seq, r := range t.recv {
		if c, ok := t.commit[seq]; ok {
			ds = append(ds, max(0, float64(r.Sub(c))/float64(time.Millisecond)))
		}
	}
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return latency{p50: at(0.50), p99: at(0.99), max: ds[len(ds)-1]}
}

// writeLog writes to path one line a delivered message, in commit order:
// its commit and its delivery, in milliseconds from the producers' start, and the
// latency between them, at least 0 as latency() counts it (a delivery can
// be recorded before its producer records the commit it returned from).
// -latency-log: where in a phase the slow deliveries were, and whether they
// came together. The producers' start, as Unix seconds, goes to path's
// ".start" file beside it, to line the log up with what other tools saw
// at the same moment (bench/vcpuprobe).
func (t *tracker) writeLog(path string) error {
	start := t.start
	type row struct{ commit, recv time.Time }
	t.mu.Lock()
	rows := make([]row, 0, len(t.recv))
	for seq, r := range t.recv {
		if c, ok := t.commit[seq]; ok {
			rows = append(rows, row{c, r})
		}
	}
	t.mu.Unlock()
	slices.SortFunc(rows, func(a, b row) int { return a.commit.Compare(b.commit) })
	var b strings.Builder
	b.WriteString("commit_ms\tdelivered_ms\tlatency_ms\n")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, r := range rows {
		fmt.Fprintf(&b, "%.3f\t%.3f\t%.3f\n", ms(r.commit.Sub(start)), ms(r.recv.Sub(start)), max(0, ms(r.recv.Sub(r.commit))))
	}
	return errors.Join(os.WriteFile(path, []byte(b.String()), 0o644),
		os.WriteFile(strings.TrimSuffix(path, ".tsv")+".start", fmt.Appendf(nil, "%d.%06d\n", start.Unix(), start.Nanosecond()/1000), 0o644))
}

// writeLatencyLogs writes the limit's and the library's latency logs of a
// phase, name-limit.tsv and name-library.tsv, to -latency-log's directory
// (nothing without it).
func (e *benchEnv) writeLatencyLogs(name string, limit, lib *tracker) error {
	dir := e.cfg.latencyLog
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return errors.Join(limit.writeLog(filepath.Join(dir, name+"-limit.tsv")),
		lib.writeLog(filepath.Join(dir, name+"-library.tsv")))
}

// keepFor returns tr when -latency-log wants it (dir set), else nil: a
// round's maps need not outlive it otherwise.
func keepFor(dir string, tr *tracker) *tracker {
	if dir == "" {
		return nil
	}
	return tr
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// library runs n producers committing a business insert and perTx messages
// per transaction through the bus for d (paced to rate tx/s when rate > 0),
// with a subscriber in the same process. watch, if not nil, is told each
// first delivery's latency (-flight-lag).
func (e *benchEnv) library(n, perTx int, d time.Duration, rate float64, watch *flight) (libResult, error) {
	e.settle()
	svc := e.service("lib")
	topic := "bench." + svc
	tr := newTracker()
	tr.watch = watch
	var slow paths
	bus := final.New(svc, e.db, e.cfg.broker.provider(e.cfg.broker.url()), e.options().WithLogger(slow.logger()))
	bus.Subscribe(topic).Handler(tr.handle)
	if err := bus.Start(); err != nil {
		return libResult{}, err
	}
	defer bus.Shutdown()
	biz, err := e.db.Prepare(e.cfg.db.bizInsert())
	if err != nil {
		return libResult{}, err
	}
	defer biz.Close()

	var next atomic.Uint64
	start := time.Now()
	tr.start = start
	commits, took := produce(n, d, rate, func(int) error {
		tx, err := e.db.Begin()
		if err != nil {
			return err
		}
		seqs := make([]uint64, perTx)
		err = bus.Transaction(tx, func(txBus *final.TxBus) error {
			if _, err := tx.Stmt(biz).Exec(1, 100); err != nil {
				return err
			}
			if e.cfg.batch && perTx > 1 {
				msgs := make([]*message.Message, perTx)
				for k := range seqs {
					seqs[k] = next.Add(1)
					msgs[k] = message.New(topic, e.payload(seqs[k]))
				}
				return txBus.PublishMessages(msgs...)
			}
			for k := range seqs {
				seqs[k] = next.Add(1)
				if err := txBus.Publish(topic, e.payload(seqs[k])); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			tr.committed(seqs, time.Now())
		}
		return err
	})
	underLoad := tr.received.Load()
	want := commits * int64(perTx)
	deadline := time.Now().Add(2 * time.Minute)
	// End to end is commit to handled, as for the raw stack, whose rows are
	// never deleted. The library's rows must still leave the outbox (each
	// AckLinger at most after its confirm): checked, not timed.
	var handled time.Time
	for tr.received.Load() < want || !e.outboxEmpty(svc) {
		if time.Now().After(deadline) {
			return libResult{}, fmt.Errorf("library phase: %d of %d messages delivered, %d rows left after 2 minutes",
				tr.received.Load(), want, e.outboxLen(svc))
		}
		if handled.IsZero() && tr.received.Load() >= want {
			handled = time.Now()
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if handled.IsZero() {
		handled = time.Now()
	}
	e2e := handled.Sub(start)
	if empty := time.Since(handled); empty > 500*time.Millisecond {
		// AckLinger (100ms by default) after the last confirm is expected;
		// much more means the acker fell behind.
		fmt.Fprintf(os.Stderr, "finalbench:   the outbox emptied %s after the last message was handled\n", empty.Round(time.Millisecond))
	}
	e.cfg.db.empty(e.db, bizTable)
	return libResult{
		commitTx: float64(commits) / took.Seconds(),
		e2eTx:    float64(commits) / e2e.Seconds(),
		loadMsgs: float64(underLoad) / took.Seconds(),
		dups:     tr.dups.Load(),
		lost:     tr.lost(),
		lat:      tr.latency(),
		msgs:     want,
		readBack: slow.readBack.Load(),
		relayed:  slow.relayed.Load(),
		tr:       keepFor(e.cfg.latencyLog, tr),
	}, nil
}

// outboxEmpty reports whether svc's outbox has no row, reading at most one:
// cheap enough to poll while measuring.
func (e *benchEnv) outboxEmpty(svc string) bool {
	var one int
	err := e.db.QueryRow("SELECT 1 FROM " + e.cfg.db.quote("final_"+svc+"_outbox") + " LIMIT 1").Scan(&one)
	return errors.Is(err, sql.ErrNoRows)
}

// outboxLen counts the rows of svc's outbox: a scan of the table, for
// progress lines, not for loops that poll.
func (e *benchEnv) outboxLen(svc string) int {
	var n int
	_ = e.db.QueryRow("SELECT COUNT(*) FROM " + e.cfg.db.quote("final_"+svc+"_outbox")).Scan(&n)
	return n
}
