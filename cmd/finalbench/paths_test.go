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

// nackFirst fails the first publish of each message, so that every row
// goes by the relay.
type nackFirst struct {
	*memory.Provider
	mu   sync.Mutex
	seen map[string]bool
}

func (p *nackFirst) PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	p.mu.Lock()
	first := !p.seen[msg.UUID]
	p.seen[msg.UUID] = true
	p.mu.Unlock()
	if first {
		return nil, fmt.Errorf("first publish of %s: %w", msg.UUID, mq.ErrNacked)
	}
	return p.Provider.PublishEncoded(ctx, msg, body)
}

// paths counts what the library logs of its slower paths: if the library's
// debug messages change, the benchmark's counts would silently read 0.
func TestPathsCountsTheRowsOffTheFastPath(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "paths.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 50
	var slow paths
	provider := &nackFirst{Provider: memory.NewBroker().Provider(), seen: map[string]bool{}}
	// A queue of 2 leaves most of a burst to the overflow, which reads it
	// back; every first publish fails, so every row is then relayed.
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
	for deadline := time.Now().Add(30 * time.Second); tr.received.Load() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages delivered", tr.received.Load(), n)
		}
	}
	if got := slow.readBack.Load(); got < 1 || got > n {
		t.Errorf("read back %d messages, want 1 to %d: a burst of %d into a queue of 2 overflows", got, n, n)
	}
	// Every first publish of a message fails, and a pack stops at its first
	// failure, so each pack of five goes to the relay at least five times
	// (the fast path having tried its first message): at least 5n
	// messages relayed, in at most 6n/5 rows.
	if got := slow.relayed.Load(); got < 5*n {
		t.Errorf("relayed %d messages, want at least %d: every first publish failed", got, 5*n)
	}
}
