package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox/sqlite"
)

// downFirst is a broker that is down (every publish refused with
// mq.ErrUnavailable) until up is called, so that every row goes by the
// relay; it counts the messages it refused.
type downFirst struct {
	*memory.Provider
	mu      sync.Mutex
	isUp    bool
	refused map[string]bool
}

func (p *downFirst) PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	p.mu.Lock()
	if !p.isUp {
		p.refused[msg.UUID] = true
		p.mu.Unlock()
		return nil, fmt.Errorf("publish of %s: %w", msg.UUID, mq.ErrUnavailable)
	}
	p.mu.Unlock()
	return p.Provider.PublishEncoded(ctx, msg, body)
}

func (p *downFirst) refusedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.refused)
}

func (p *downFirst) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isUp = true
}

// paths counts what the library logs of its slower paths: if the library's
// debug messages change, the benchmark's counts would silently read 0.
func TestPathsCountsTheMessagesOffTheFastPath(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "paths.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 50
	var slow paths
	provider := &downFirst{Provider: memory.NewBroker().Provider(), refused: map[string]bool{}}
	// A queue of 2 leaves most of a burst to the overflow, which reads it
	// back; the broker is down until each row has been tried, so every row
	// is then relayed, whole (a pack is split only when some of it went).
	opt := final.DefaultOptions().WithLogger(slow.logger()).WithDispatchQueueSize(2).
		WithOutboxScanInterval(20 * time.Millisecond)
	opt.OutboxRetryBase = time.Millisecond
	bus := final.New("paths", db, provider, opt)
	tr := newTracker()
	bus.Subscribe("paths.t").Handler(tr.handle)
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	defer bus.Shutdown()

	// One transaction, in packs of five messages each: the counts are of
	// messages, not rows.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	err = bus.Transaction(tx, func(txBus *final.TxBus) error {
		for first := 0; first < n; first += 5 {
			msgs := make([]*message.Message, 5)
			for i := range msgs {
				seq := make([]byte, 8)
				binary.BigEndian.PutUint64(seq, uint64(first+i+1))
				msgs[i] = message.New("paths.t", seq)
			}
			if err := txBus.PublishMessages(msgs...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each pack stops at its first refused message: ten refused, one a pack.
	for deadline := time.Now().Add(30 * time.Second); provider.refusedCount() < n/5; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d packs tried", provider.refusedCount(), n/5)
		}
	}
	provider.up()
	for deadline := time.Now().Add(30 * time.Second); tr.received.Load() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages delivered", tr.received.Load(), n)
		}
	}
	if got := slow.readBack.Load(); got < 1 || got > n {
		t.Errorf("read back %d messages, want 1 to %d: a burst of %d into a queue of 2 overflows", got, n, n)
	}
	// Every pack failed whole before the broker came up: the relay sent all
	// n messages, in n/5 rows (and a few more claimed while it was down).
	if got := slow.relayed.Load(); got < n {
		t.Errorf("relayed %d messages, want at least %d: every first publish failed", got, n)
	}
}
