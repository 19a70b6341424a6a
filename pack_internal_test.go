package final

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/postgres"
	"github.com/finalbus/final/outbox/sqlite"
)

// failingProvider publishes to the in-memory broker, but refuses the
// publish of the messages in refuse (with refusal, mq.ErrUnavailable if
// nil) and nacks those in nack (not sent); it counts the publishes tried
// of each message, and those passed on.
type failingProvider struct {
	*memory.Provider
	refuse, nack map[string]bool
	refusal      error

	mu            sync.Mutex
	tried, passed map[string]int
}

func (p *failingProvider) PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tried == nil {
		p.tried, p.passed = map[string]int{}, map[string]int{}
	}
	p.tried[msg.UUID]++
	switch {
	case p.refuse[msg.UUID] && p.refusal != nil:
		return nil, p.refusal
	case p.refuse[msg.UUID]:
		return nil, mq.ErrUnavailable
	case p.nack[msg.UUID]:
		return nackedConfirmation{}, nil
	}
	p.passed[msg.UUID]++
	return p.Provider.PublishEncoded(ctx, msg, body)
}

func (p *failingProvider) triedOf(uuid string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tried[uuid]
}

func (p *failingProvider) passedOf(uuid string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passed[uuid]
}

type nackedConfirmation struct{}

func (nackedConfirmation) Wait(context.Context) error { return mq.ErrNacked }

// startDispatcher starts a dispatcher on p, initialised for topic "t", with
// an acker on a countingStore; stop closes it and waits until every verdict
// is written (p is closed when the test ends).
func startDispatcher(t *testing.T, p mq.IProvider, o Options) (d *dispatcher, store *countingStore, stop func()) {
	t.Helper()
	if err := p.Init(context.Background(), mq.Config{Service: "svc", Topics: []string{"t"}, Logger: o.Logger}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	store = &countingStore{}
	a := newAcker(context.Background(), store, o)
	d = newDispatcher(context.Background(), p, a, o)
	a.start(1)
	d.start()
	return d, store, func() {
		d.close()
		d.wait()
		a.closeAndWait()
	}
}

// packOf is a committed pack of n messages of topic t.
func packOf(t *testing.T, id int64, n int) outgoing {
	t.Helper()
	o := outgoing{id: id}
	for range n {
		m, err := snapshot(message.New("t", []byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		o.pack = append(o.pack, outbox.Part{Message: m.msg, Body: m.body})
	}
	return o
}

// A pack gets one verdict: it is deleted once, when every message in it is
// confirmed, and it fails once, not deleted, when one of its messages is
// nacked (the others go on) or cannot be published (the rest are not
// tried). (These failures would split the packs, which a store that cannot
// read rows back, as here, cannot: they are failed whole.)
func TestDispatcherGivesAPackOneVerdict(t *testing.T) {
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	good, nacked, refused := packOf(t, 1, 3), packOf(t, 2, 3), packOf(t, 3, 3)
	p := &failingProvider{
		Provider: memory.NewBroker().Provider(),
		nack:     map[string]bool{nacked.pack[1].Message.UUID: true},
		refuse:   map[string]bool{refused.pack[0].Message.UUID: true},
	}
	d, store, stop := startDispatcher(t, p, o)
	for _, row := range []outgoing{good, nacked, refused} {
		if err := d.submit(context.Background(), row); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() >= 1 && store.failed.Load() >= 2 }, "the verdicts")
	stop()
	if del, failed := store.deleted.Load(), store.failed.Load(); del != 1 || failed != 2 {
		t.Fatalf("%d rows deleted and %d failed; want 1 (the good pack) and 2 (the other packs)", del, failed)
	}
	for i, part := range nacked.pack {
		if n := p.triedOf(part.Message.UUID); n != 1 {
			t.Fatalf("message %d of the nacked pack was tried %d times, want 1", i, n)
		}
	}
	for i, part := range refused.pack {
		if want := map[bool]int{true: 1, false: 0}[i == 0]; p.triedOf(part.Message.UUID) != want {
			t.Fatalf("message %d of the refused pack was tried %d times, want %d", i, p.triedOf(part.Message.UUID), want)
		}
	}
	if held, _ := d.bytes.held(); held != 0 {
		t.Fatalf("%d bytes still counted held", held)
	}
	if n := len(d.window); n != 0 {
		t.Fatalf("%d slots of the window still taken", n)
	}
}

// A pack one of whose messages keeps failing is split: its confirmed
// messages are not sent again, the others get a row each, and the failing
// one is retried alone, holding up none of the rest. On each store (on
// PostgreSQL and MariaDB in a held claim, on SQLite by the acker), with the
// message nacked (the others are published beside it) and with its
// publish refused (the ones after it are not tried until the split).
func TestAFailingMessageSplitsItsPack(t *testing.T) {
	stores := map[string]func(t *testing.T) (outbox.Store, *sql.DB){
		"mysql": func(t *testing.T) (outbox.Store, *sql.DB) {
			db := testenv.DB(t)
			return mysqlStore(t, db, mysql.Options{RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond}), db
		},
		"postgres": func(t *testing.T) (outbox.Store, *sql.DB) {
			db := testenv.Postgres(t)
			s, err := postgres.New(db, "final_"+testenv.PostgresService(t, db)+"_outbox", postgres.Options{RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
			return migrated(t, s, err), db
		},
		"sqlite": func(t *testing.T) (outbox.Store, *sql.DB) {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "split.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s, err := sqlite.New(db, "final_split_outbox", sqlite.Options{RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
			return migrated(t, s, err), db
		},
	}
	for name, newStore := range stores {
		for _, mode := range []string{"nacked", "refused"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				store, db := newStore(t)
				o := DefaultOptions().WithOutboxScanInterval(10 * time.Millisecond)
				o.OutboxRetryBase = 10 * time.Millisecond
				o.Logger = discardLogger()
				msgs := make([]*message.Message, 5)
				bodies := make([][]byte, len(msgs))
				for i := range msgs {
					msgs[i] = message.New("bound", []byte{byte(i)})
					var err error
					if bodies[i], err = message.Marshal(msgs[i]); err != nil {
						t.Fatal(err)
					}
				}
				poison := msgs[2].UUID
				p := &failingProvider{Provider: memoryProvider(t, o)}
				if mode == "nacked" {
					p.nack = map[string]bool{poison: true}
				} else {
					p.refuse, p.refusal = map[string]bool{poison: true}, errors.New("message too large")
				}
				if _, err := store.Insert(context.Background(), nil, outbox.Row{Body: outbox.Pack(bodies)}); err != nil {
					t.Fatal(err)
				}
				runPipelineSplitting(t, store, outbox.SQLBeginner(db), p, o)
				testenv.Eventually(t, 30*time.Second, func() bool { return p.triedOf(poison) >= 4 }, "the failing message retried")
				for i, m := range msgs {
					if want := map[bool]int{true: 0, false: 1}[m.UUID == poison]; p.passedOf(m.UUID) != want {
						t.Fatalf("message %d was sent %d times, want %d", i, p.passedOf(m.UUID), want)
					}
				}
				testenv.Eventually(t, 10*time.Second, func() bool {
					n, err := store.Len(context.Background())
					return err == nil && n == 1
				}, "the failing message's row alone left in the outbox")
			})
		}
	}
}

// migrated migrates s, made by New.
func migrated[S outbox.Store](t *testing.T, s S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// gateProvider publishes to the in-memory broker; its first publish closes
// entered, then waits until gate is closed.
type gateProvider struct {
	*memory.Provider
	entered, gate chan struct{}
	first         sync.Once

	mu    sync.Mutex
	tried int
}

func (p *gateProvider) PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	p.first.Do(func() {
		close(p.entered)
		<-p.gate
	})
	p.mu.Lock()
	p.tried++
	p.mu.Unlock()
	return p.Provider.PublishEncoded(ctx, msg, body)
}

// A pack whose window closes part way through its messages (its first
// publish outlasted sendBy) is still sent whole and deleted: left to the
// relays part way, its confirmed messages would be sent again.
func TestDispatcherSendsAPackWholeOnceStarted(t *testing.T) {
	o := DefaultOptions()
	o.Logger = discardLogger()
	p := &gateProvider{Provider: memory.NewBroker().Provider(), entered: make(chan struct{}), gate: make(chan struct{})}
	d, store, stop := startDispatcher(t, p, o)
	pack := packOf(t, 1, 3)
	pack.sendBy = time.Now().Add(3 * time.Second)
	if err := d.submit(context.Background(), pack); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the pack's first publish did not start")
	}
	// The window closes while the first publish waits.
	<-time.After(time.Until(pack.sendBy) + 10*time.Millisecond)
	close(p.gate)
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() == 1 }, "the pack deleted")
	stop()
	p.mu.Lock()
	tried := p.tried
	p.mu.Unlock()
	if tried != 3 || store.deleted.Load() != 1 || store.failed.Load() != 0 || store.released.Load() != 0 {
		t.Fatalf("%d publishes tried, %d rows deleted, %d failed, %d released; want 3, 1, 0, 0",
			tried, store.deleted.Load(), store.failed.Load(), store.released.Load())
	}
}

// packStore hands out, per claim, as many packs of ten messages as the
// claim's limit allows, and records the limits.
type packStore struct {
	countingStore
	mu     sync.Mutex
	limits []int
}

func (s *packStore) Claim(_ context.Context, _ string, limit, _ int, _ time.Duration) ([]outbox.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, limit)
	recs := make([]outbox.Record, limit)
	for i := range recs {
		recs[i] = outbox.Record{ID: int64(len(s.limits)*10_000 + i), Body: []byte("b")}
		for range 10 {
			recs[i].Pack = append(recs[i].Pack, outbox.Part{Message: message.New("t", nil), Body: []byte("b")})
		}
	}
	return recs, nil
}

// A claim takes about OutboxScanOffset messages, not rows: after a batch of
// packs of ten, a tenth of the rows, so that a batch is sent within its
// lease whatever its rows hold.
func TestRelayClaimsMessagesNotRows(t *testing.T) {
	o := DefaultOptions().WithOutboxScanOffset(100)
	o.Logger = discardLogger()
	store := &packStore{}
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), store, o), o)
	r := newRelay(store, d, "me", o)
	for range 2 {
		if _, err := r.scan(); err != nil {
			t.Fatal(err)
		}
		for len(d.queue) > 0 { // the loops are not running: empty the queue by hand
			<-d.queue
		}
	}
	if got := store.limits; len(got) != 2 || got[0] != 100 || got[1] != 10 {
		t.Fatalf("claim limits %v, want [100 10]", got)
	}
}

// When a pack is split (its unconfirmed messages a row each) and when it
// goes whole again.
func TestWhenAPackIsSplit(t *testing.T) {
	nacked, refused := fmt.Errorf("nack: %w", mq.ErrNacked), errors.New("message too large")
	down := fmt.Errorf("publish: %w", mq.ErrUnavailable)
	type verdict struct {
		published bool
		err       error
	}
	ok := verdict{true, nil}
	cases := []struct {
		name     string
		verdicts []verdict
		want     []int
	}{
		{"all confirmed", []verdict{ok, ok, ok}, nil},
		{"one nacked among confirmed", []verdict{ok, {true, nacked}, ok}, []int{1}},
		{"refused after one confirmed", []verdict{ok, {false, down}, {false, down}}, []int{1, 2}},
		{"the first refused for itself", []verdict{{false, refused}, {false, refused}, {false, refused}}, []int{0, 1, 2}},
		{"the broker unreachable", []verdict{{false, down}, {false, down}, {false, down}}, nil},
		{"every confirm nacked (a lost connection)", []verdict{{true, nacked}, {true, nacked}, {true, nacked}}, nil},
		{"unroutable", []verdict{{true, mq.ErrUnroutable}, {true, mq.ErrUnroutable}, {true, mq.ErrUnroutable}}, nil},
		{"not confirmed in time", []verdict{{true, errConfirmTimeout}, {true, errConfirmTimeout}, {true, errConfirmTimeout}}, nil},
	}
	for _, c := range cases {
		v := &packVerdict{left: len(c.verdicts), confirmed: make([]bool, len(c.verdicts))}
		for i, x := range c.verdicts {
			v.settle(i, x.published, x.err)
		}
		if got := v.unconfirmed(); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: split %v, want %v", c.name, got, c.want)
		}
	}
}

// flakyBeginner fails its first Begin with err, then begins on the
// Beginner.
type flakyBeginner struct {
	outbox.Beginner
	err    error
	failed atomic.Bool
}

func (b *flakyBeginner) Begin(ctx context.Context) (outbox.Tx, error) {
	if !b.failed.Swap(true) {
		return nil, b.err
	}
	return b.Beginner.Begin(ctx)
}

// A split whose transaction could not begin because the connection failed
// is tried again, not given up: given up, the pack was failed whole, and
// its confirmed messages were sent again. One that failed otherwise is
// given up (trying again would hold up the acker's other writes): the
// pack stays, failed whole.
func TestAckerSplitsAPackAfterABeginFails(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		split bool
	}{
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"refused", errors.New("the database is read-only"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store, begin, pack, bodies := splittable(t)
			begin.err = c.err
			o := DefaultOptions()
			o.Logger = discardLogger()
			a := newAcker(context.Background(), store, o)
			a.begin = begin
			a.start(1)
			a.fail(failure{id: pack, err: fmt.Errorf("nack: %w", mq.ErrNacked), split: []int{1}})
			a.closeAndWait()
			if !begin.failed.Load() {
				t.Fatal("the split began no transaction")
			}
			recs, err := store.Read(context.Background(), []int64{pack, pack + 1})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := store.Len(context.Background()); err != nil || n != 1 || len(recs) != 1 {
				t.Fatalf("the outbox holds %d rows (%v), %d of them the pack or the row after it; want one", n, err, len(recs))
			}
			switch {
			case c.split && (recs[0].ID != pack+1 || !bytes.Equal(recs[0].Body, bodies[1])):
				t.Fatalf("left row %d; want the pack split: the row after it (%d) holding message 1 alone", recs[0].ID, pack+1)
			case !c.split && (recs[0].ID != pack || recs[0].Attempts != 1):
				t.Fatalf("left row %d with %d attempts; want the pack (%d) failed whole once", recs[0].ID, recs[0].Attempts, pack)
			}
		})
	}
}

// splittable is a SQLite store holding one pack of three messages, and a
// Beginner on its database for the split.
func splittable(t *testing.T) (store *sqlite.Store, begin *flakyBeginner, pack int64, bodies [][]byte) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "split.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlite.New(db, "final_split_outbox", sqlite.Options{})
	store = migrated(t, s, err)
	bodies = make([][]byte, 3)
	for i := range bodies {
		if bodies[i], err = message.Marshal(message.New("t", []byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	if pack, err = store.Insert(context.Background(), nil, outbox.Row{Body: outbox.Pack(bodies)}); err != nil {
		t.Fatal(err)
	}
	return store, &flakyBeginner{Beginner: outbox.SQLBeginner(db)}, pack, bodies
}
