package faults

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

var (
	full = flag.Bool("faults.full", false, "run the full fault suite (longer; stops the RabbitMQ application)")
	only = flag.String("faults.only", "", "run only the scenarios whose name contains this")
)

// vhost is the suite's own RabbitMQ vhost.
const vhost = "final_faults"

// world is the suite's isolated corner of the services on one database
// and one broker.
type world struct {
	db        *database
	broker    *broker
	rootDB    *sql.DB // root: setup, checks, cleanup
	dsn       string  // the suite user's DSN
	dbAddr    string  // the database's host:port
	brokerURL string  // the suite's corner of the broker: its vhost, or the server its prefix is used on

	dsnVia          func(addr string) string  // the suite user's DSN through another address (a proxy)
	service         func(t *testing.T) string // a fresh service whose tables and queues go when t ends
	killConnections func() (int, error)       // kills the suite user's connections, returns how many
}

// name is the world's in test names and the report: the database, and the
// broker unless it is RabbitMQ.
func (w *world) name() string {
	if w.broker == rabbitMQ {
		return w.db.name
	}
	return w.db.name + "+" + w.broker.name
}

// scene is one scenario's service, truth table and receipts.
type scene struct {
	t     *testing.T
	w     *world
	svc   string
	table string // business table: the truth
	topic string

	mu   sync.Mutex
	seen map[string]int // receipts by ref

	recvTable string         // set when consumers run in other processes and record receipts there
	starts    map[string]int // handler starts by ref, as such consumers report them
	// claimedByKilled counts the rows that killed processes had claimed
	// and not deleted when they died.
	claimedByKilled int

	// drained, when set, reports whether the broker holds nothing more for
	// the scene's consumers: once the outbox is empty too, a message not
	// delivered yet never will be. explainLoss, when set, logs what the
	// broker knows of the lost messages.
	drained     func() bool
	explainLoss func(lost []string)
	// knownLoss, when set, says why the broker loses messages in this
	// scene: a defect of the broker's, not final's, which the suite reports
	// instead of failing on.
	knownLoss string
}

func newScene(t *testing.T, w *world) *scene {
	svc := w.service(t)
	s := &scene{t: t, w: w, svc: svc, table: "biz_" + svc, topic: svc + ".event", seen: map[string]int{}}
	if w.broker == natsBroker {
		s.watchNATS(w.brokerURL)
	}
	w.createTable(t, s.table, w.db.idCol+", ref VARCHAR(64) NOT NULL UNIQUE")
	t.Cleanup(func() {
		_, _ = w.rootDB.Exec("DROP TABLE IF EXISTS " + w.db.quote("final_"+svc+"_inbox"))
		w.broker.drop(w.brokerURL, svc, s.topic)
	})
	return s
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// options are the defaults the suite runs with: shorter retry and lease
// times than production so that recovery shows within the run.
func options() final.Options {
	return final.DefaultOptions().WithLogger(quiet()).
		WithOutboxScanAgoTime(2*time.Second).WithOutboxScanInterval(200*time.Millisecond).
		WithPublishTimeout(2*time.Second).WithOutboxLease(4*time.Second).
		WithOutboxRetry(50*time.Millisecond, time.Second)
}

// bus starts an instance of the scene's service on db and the broker at
// url, subscribed when consume is set.
func (s *scene) bus(db *sql.DB, url string, consume bool) *final.Bus {
	s.t.Helper()
	b := final.New(s.svc, db, s.w.broker.provider(url), options())
	if consume {
		b.Subscribe(s.topic).Handler(s.record)
	}
	if err := b.Start(); err != nil {
		s.t.Fatalf("start: %v", err)
	}
	s.t.Cleanup(func() { _ = b.Shutdown() })
	return b
}

// started counts a handler's first start on ref in a consumer process.
func (s *scene) started(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starts == nil {
		s.starts = map[string]int{}
	}
	s.starts[ref]++
}

func (s *scene) record(c *final.Context) error {
	s.mu.Lock()
	s.seen[string(c.Message.Payload)]++
	s.mu.Unlock()
	return nil
}

// commit writes a business row and its message in one transaction.
func (s *scene) commit(b *final.Bus, db *sql.DB, ref string) error {
	return s.write(b, db, []string{ref}, nil)
}

// write writes a business row and a message for each of refs in one
// transaction, which rolls back when fail is set. Several refs are
// published with one PublishMessages: a pack.
func (s *scene) write(b *final.Bus, db *sql.DB, refs []string, fail error) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	return b.Transaction(tx, func(txBus *final.TxBus) error {
		msgs := make([]*message.Message, len(refs))
		for i, ref := range refs {
			if _, err := tx.Exec("INSERT INTO "+s.w.db.quote(s.table)+" (ref) VALUES ("+s.w.db.ph+")", ref); err != nil {
				return err
			}
			msgs[i] = message.New(s.topic, []byte(ref))
		}
		if len(msgs) == 1 {
			if err := txBus.Publish(s.topic, msgs[0].Payload); err != nil {
				return err
			}
		} else if err := txBus.PublishMessages(msgs...); err != nil {
			return err
		}
		return fail
	})
}

// packOf is the refs a load goroutine writes in one transaction: odd
// goroutines write three messages as a pack, even ones one.
func packOf(worker int, ref string) []string {
	if worker%2 == 0 {
		return []string{ref}
	}
	return []string{ref + "a", ref + "b", ref + "c"}
}

// load commits continuously from n goroutines until stop is called; about
// a tenth of the transactions roll back after publishing. Half the
// goroutines commit three messages a transaction, as a pack.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	tries  atomic.Int64
}

var errRollback = errors.New("deliberate rollback")

func (s *scene) startLoad(b *final.Bus, db *sql.DB, n int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for w := 0; w < n; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				l.tries.Add(1)
				ref := fmt.Sprintf("%d-%d", w, i)
				if i%10 == 9 {
					ref = "rb-" + ref
					_ = s.write(b, db, packOf(w, ref), errRollback)
					continue
				}
				if err := s.write(b, db, packOf(w, ref), nil); err != nil {
					time.Sleep(20 * time.Millisecond) // back off while the fault lasts
				}
			}
		}()
	}
	return l
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// committed reads the truth.
func (s *scene) committed() map[string]bool {
	rows, err := s.w.rootDB.Query("SELECT ref FROM " + s.w.db.quote(s.table))
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	truth := map[string]bool{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			s.t.Fatal(err)
		}
		truth[r] = true
	}
	return truth
}

func (s *scene) outboxRows() int {
	var n int
	_ = s.w.rootDB.QueryRow("SELECT COUNT(*) FROM " + s.w.db.quote("final_"+s.svc+"_outbox")).Scan(&n)
	return n
}

// result is one row of the summary table.
type result struct {
	db, broker, scenario                                string
	faults                                              int
	committed, delivered, lost, phantom, dups, rowsLeft int
	recovery                                            time.Duration
	// redone counts the messages whose handler a kill cut off before its
	// record and that another process then handled, once; marked says
	// whether the scenario's consumers report handler starts at all.
	redone int
	marked bool
	// claimedByKilled is the scene's count: rows killed relays left
	// claimed, which may be sent twice.
	claimedByKilled int
}

// settle waits (up to 90s) until everything committed was delivered and
// the outbox is empty, or the outbox is empty and the broker has drained,
// then tallies.
func (s *scene) settle(name string, faults int, faultEnded time.Time) result {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var (
		truth     map[string]bool
		nextDrain time.Time
	)
	for {
		truth = s.committed()
		empty := s.outboxRows() == 0
		if empty && s.allDelivered(truth) {
			break
		}
		if empty && s.drained != nil && time.Now().After(nextDrain) {
			if s.drained() && !s.allDelivered(s.committed()) { // nothing more will come
				break
			}
			nextDrain = time.Now().Add(500 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	r := result{db: s.w.db.name, broker: s.w.broker.name, scenario: name, faults: faults, recovery: time.Since(faultEnded), committed: len(truth), rowsLeft: s.outboxRows()}
	if r.rowsLeft > 0 {
		s.explain()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost []string
	for ref := range truth {
		if s.seen[ref] == 0 {
			r.lost++
			lost = append(lost, ref)
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		s.t.Logf("lost: %s", strings.Join(lost[:min(len(lost), 20)], " "))
		if s.explainLoss != nil {
			s.explainLoss(lost)
		}
	}
	for ref, n := range s.seen {
		r.delivered++
		r.dups += n - 1
		if !truth[ref] {
			r.phantom++
		}
	}
	r.marked = s.starts != nil
	r.claimedByKilled = s.claimedByKilled
	for ref, n := range s.starts {
		if n > 1 && s.seen[ref] == 1 {
			r.redone++
		}
	}
	return r
}

// loadReceipts refreshes seen from recvTable.
func (s *scene) loadReceipts() {
	if s.recvTable == "" {
		return
	}
	rows, err := s.w.rootDB.Query("SELECT ref, COUNT(*) FROM " + s.w.db.quote(s.recvTable) + " GROUP BY ref")
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]int{}
	for rows.Next() {
		var (
			ref string
			n   int
		)
		if err := rows.Scan(&ref, &n); err != nil {
			s.t.Fatal(err)
		}
		seen[ref] = n
	}
	s.mu.Lock()
	s.seen = seen
	s.mu.Unlock()
}

// explain logs the rows left in the outbox and writes every goroutine's
// stack to a file, to show why they are stuck.
func (s *scene) explain() {
	rows, err := s.w.rootDB.Query("SELECT id, attempts, COALESCE(last_error, ''), available_at, " + s.w.db.now + ", COALESCE(claimed_by, '') FROM " +
		s.w.db.quote("final_"+s.svc+"_outbox") + " ORDER BY id LIMIT 10")
	if err == nil {
		for rows.Next() {
			var (
				id, attempts         int64
				lastErr, at, now, by string
			)
			_ = rows.Scan(&id, &attempts, &lastErr, &at, &now, &by)
			s.t.Logf("stuck row %d: attempts=%d available_at=%s now=%s claimed_by=%q last_error=%q", id, attempts, at, now, by, lastErr)
		}
		rows.Close()
	}
	path := filepath.Join(os.TempDir(), "faults-goroutines-"+s.svc+".txt")
	if f, err := os.Create(path); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(f, 2)
		f.Close()
		s.t.Logf("goroutine stacks: %s", path)
	}
}

func (s *scene) allDelivered(truth map[string]bool) bool {
	s.loadReceipts()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref := range truth {
		if s.seen[ref] == 0 {
			return false
		}
	}
	return true
}

// sleep lasts a fault or a stretch of load; it synchronises nothing.
func sleep(d time.Duration) { time.Sleep(d) }

func reps(short, long int) int {
	if *full {
		return long
	}
	return short
}

func TestMain(m *testing.M) {
	if role := os.Getenv("FAULTS_ROLE"); role != "" {
		os.Exit(runRole(role))
	}
	goleak.VerifyTestMain(m)
}
