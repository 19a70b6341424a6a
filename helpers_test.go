package final_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/finalbus/final"
	"github.com/finalbus/final/embedded"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelperProducer())
	}
	// gorm's PrepareStmt mode starts a statement cache whose expiry
	// goroutine never ends (gorm/internal/lru: "done channel is never
	// closed"); it is gorm's, one per gorm DB.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gorm.io/gorm/internal/lru.NewLRU[...].func1"))
}

// testOptions are the defaults with a Debug logger into memory, printed
// only if t fails (FINAL_TEST_LOG=debug prints it always).
func testOptions(t *testing.T) final.Options {
	o := final.DefaultOptions()
	buf := &logBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("FINAL_TEST_LOG") == "debug" {
			t.Logf("bus log (last 300 lines):\n%s", buf.tail(300))
		}
	})
	return o
}

// logBuffer keeps a log in memory; it outlives the test safely.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(l.buf.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// env is one test's database, broker URL and service name. On the
// embedded pair (the database named "embedded") the broker is the
// in-process NATS server of emb, and url is empty.
type env struct {
	database
	t   *testing.T
	db  *sql.DB
	url string
	svc string
	emb *embedded.Env
}

// newEnv is an env on MariaDB.
func newEnv(t *testing.T) *env { return newEnvOn(t, mariaDB) }

// newEnvOn is an env on d.
func newEnvOn(t *testing.T, d database) *env {
	if d.name == embeddedDB.name {
		emb, err := embedded.Open(t.TempDir())
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, emb.Close()) })
		e := &env{database: d, t: t, db: emb.DB, emb: emb}
		e.svc = testenv.Service(t, nil)
		return e
	}
	e := &env{database: d, t: t, db: d.open(t), url: testenv.AMQP(t)}
	e.svc = e.service()
	return e
}

// service returns a fresh service name, whose tables and queues are
// removed when the test ends.
func (e *env) service() string {
	if e.name == mariaDB.name {
		return testenv.Service(e.t, e.db)
	}
	svc := testenv.Service(e.t, nil) // its queues
	e.dropService(e.t, e.db, svc)
	return svc
}

// start builds, subscribes and starts a bus of service svc; it is shut
// down when the test ends.
func (e *env) start(svc, url string, opt final.Options, subscribe func(b *final.Bus)) *final.Bus {
	e.t.Helper()
	var p mq.IProvider
	if e.emb != nil {
		p = e.emb.Provider()
	} else {
		p = amqp.NewProvider(url, amqp.WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond))
	}
	b := final.New(svc, e.db, p, opt)
	if subscribe != nil {
		subscribe(b)
	}
	require.NoError(e.t, b.Start())
	e.t.Cleanup(func() { require.NoError(e.t, b.Shutdown()) })
	return b
}

func (e *env) outboxRows() int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.db.QueryRow("SELECT COUNT(*) FROM "+e.quote("final_"+e.svc+"_outbox")).Scan(&n))
	return n
}

// business creates the test's business table: the truth a checker compares
// deliveries with.
func (e *env) business() string {
	e.t.Helper()
	table := "biz_" + e.svc
	_, err := e.db.Exec("CREATE TABLE " + e.quote(table) + " (id " + e.autoID + ", ref VARCHAR(64) NOT NULL UNIQUE)")
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _, _ = e.db.Exec("DROP TABLE IF EXISTS " + e.quote(table)) })
	return table
}

func (e *env) committedRefs(table string) []string {
	e.t.Helper()
	rows, err := e.db.Query("SELECT ref FROM " + e.quote(table))
	require.NoError(e.t, err)
	defer rows.Close()
	var refs []string
	for rows.Next() {
		var r string
		require.NoError(e.t, rows.Scan(&r))
		refs = append(refs, r)
	}
	require.NoError(e.t, rows.Err())
	return refs
}

// channel opens an AMQP channel of its own, closed when the test ends.
func (e *env) channel() *amqp091.Channel {
	e.t.Helper()
	conn, err := amqp091.Dial(e.url)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	require.NoError(e.t, err)
	return ch
}

// deadLetters drains the service's dead-letter queue.
func (e *env) deadLetters() []amqp091.Delivery {
	e.t.Helper()
	conn, err := amqp091.Dial(e.url)
	require.NoError(e.t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(e.t, err)
	var out []amqp091.Delivery
	for {
		d, ok, err := ch.Get("final."+e.svc+".dlq", true)
		require.NoError(e.t, err)
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// recorder counts deliveries by payload.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}} }

func (r *recorder) handle(c *final.Context) error {
	r.mu.Lock()
	r.seen[string(c.Message.Payload)]++
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[ref]
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// tally compares deliveries with the committed refs.
type tally struct {
	committed, delivered, lost, phantom, duplicates int
}

func (t tally) String() string {
	return fmt.Sprintf("committed=%d delivered=%d lost=%d phantom=%d duplicates=%d",
		t.committed, t.delivered, t.lost, t.phantom, t.duplicates)
}

func (r *recorder) tally(committed []string) tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	truth := make(map[string]bool, len(committed))
	t := tally{committed: len(committed)}
	for _, ref := range committed {
		truth[ref] = true
		if n := r.seen[ref]; n == 0 {
			t.lost++
		}
	}
	for ref, n := range r.seen {
		t.delivered++
		t.duplicates += n - 1
		if !truth[ref] {
			t.phantom++
		}
	}
	return t
}

// waitAll waits until every ref was delivered.
func (r *recorder) waitAll(t *testing.T, refs []string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, ref := range refs {
			if r.seen[ref] == 0 {
				return false
			}
		}
		return true
	}, "all %d refs delivered (have %v)", len(refs), lazy(func() any { return r.distinct() }))
}

// lazy formats as what its function returns when formatted: a failure
// message then says what was true at the deadline, not when the wait began.
type lazy func() any

func (l lazy) String() string { return fmt.Sprint(l()) }

// decodeBody returns the payload of a body the bus published.
func decodeBody(body []byte) ([]byte, error) {
	m, err := message.Unmarshal(body)
	if err != nil {
		return nil, err
	}
	return m.Payload, nil
}
