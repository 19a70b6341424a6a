package pgxbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/pgxbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a bus on a pgxpool.Pool with a business table and an Inbox
// table of credits (no unique key: only the inbox keeps a duplicate out).
type env struct {
	pool          *pgxpool.Pool
	svc           string
	biz, credits  string
	topic, credit string
}

func newEnv(t *testing.T) *env {
	url := testenv.AMQP(t)
	db := testenv.Postgres(t) // for the cleanup of the service's tables
	e := &env{pool: testenv.PostgresPool(t), svc: testenv.PostgresService(t, db)}
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc})...)
	e.biz, e.credits = `"biz_`+e.svc+`"`, `"credits_`+e.svc+`"`
	e.topic, e.credit = e.svc+".created", e.svc+".credited"
	ctx := context.Background()
	_, err := e.pool.Exec(ctx, `CREATE TABLE `+e.biz+` (ref TEXT PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `CREATE TABLE `+e.credits+` (ref TEXT NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + e.biz)
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + e.credits)
	})
	_ = url
	return e
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// recorder counts the deliveries of each payload.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *recorder) handle(c *final.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[string(c.Message.Payload)]++
	return nil
}

func (r *recorder) get(ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[ref]
}

// A pgx.Tx's messages are delivered if and only if it commits, with its
// business rows; an Inbox handler writes on the pgx.Tx the bus began, once
// per message although the message comes twice, and its write is rolled
// back with the inbox record when it fails.
func TestBusOnPgxPool(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := &recorder{seen: map[string]int{}}
	var (
		mu       sync.Mutex
		calls    = map[string]int{}
		sqlTxNil = true
	)
	opt := final.DefaultOptions().WithNumSubscriber(1).WithRetryCount(2).WithRetryInterval(10 * time.Millisecond)
	b := pgxbus.New(e.svc, e.pool, amqp.NewProvider(testenv.AMQP(t)), opt)
	b.Subscribe(e.topic).Handler(rec.handle)
	b.Subscribe(e.credit).Inbox().Handler(func(c *final.Context) error {
		ref := string(c.Message.Payload)
		mu.Lock()
		calls[ref]++
		first := calls[ref] == 1
		sqlTxNil = sqlTxNil && c.Tx() == nil
		mu.Unlock()
		tx := pgxbus.Tx(c)
		if tx == nil {
			return errors.New("no pgx.Tx in an Inbox handler")
		}
		if _, err := tx.Exec(c.Context(), `INSERT INTO `+e.credits+` (ref) VALUES ($1)`, ref); err != nil {
			return err
		}
		if ref == "fails-once" && first {
			return errors.New("fails after its write") // rolled back with the inbox record
		}
		return nil
	})
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })

	var committed []string
	for i := 0; i < 20; i++ {
		for _, fail := range []error{nil, errors.New("rolled back")} {
			ref := fmt.Sprintf("r%d-%v", i, fail == nil)
			tx, err := e.pool.Begin(ctx)
			require.NoError(t, err)
			err = pgxbus.Transaction(ctx, b, tx, func(txBus *final.TxBus) error {
				if _, err := tx.Exec(ctx, `INSERT INTO `+e.biz+` (ref) VALUES ($1)`, ref); err != nil {
					return err
				}
				if err := txBus.Publish(e.topic, []byte(ref)); err != nil {
					return err
				}
				return fail
			})
			if fail == nil {
				require.NoError(t, err)
				committed = append(committed, ref)
			} else {
				require.ErrorIs(t, err, fail)
			}
		}
	}
	// Committed on the pgx.Tx directly: the relay sends it.
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, pgxbus.WithTx(ctx, b, tx).Publish(e.topic, []byte("direct")))
	require.NoError(t, tx.Commit(ctx))
	committed = append(committed, "direct")

	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, ref := range committed {
			if rec.get(ref) == 0 {
				return false
			}
		}
		return true
	}, "every committed message delivered")
	for i := 0; i < 20; i++ {
		require.Zero(t, rec.get(fmt.Sprintf("r%d-false", i)), "a rolled-back message was delivered")
	}
	require.Equal(t, len(committed)-1, e.count(t, `SELECT COUNT(*) FROM `+e.biz))
	testenv.Eventually(t, 20*time.Second, func() bool {
		return e.count(t, `SELECT COUNT(*) FROM "final_`+e.svc+`_outbox"`) == 0
	}, "outbox empty")

	m := message.New(e.credit, []byte("once"))
	require.NoError(t, b.PublishMessage(m))
	dup := message.New(e.credit, []byte("once"))
	dup.UUID = m.UUID
	require.NoError(t, b.PublishMessage(dup))
	require.NoError(t, b.Publish(e.credit, []byte("fails-once")))
	require.NoError(t, b.Publish(e.credit, []byte("after"))) // handled after the others
	credits := func(ref string) int {
		return e.count(t, `SELECT COUNT(*) FROM `+e.credits+` WHERE ref = $1`, ref)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return credits("after") == 1 }, "the last message handled")
	require.Equal(t, 1, credits("once"), "the duplicate was acknowledged without a second write")
	require.Equal(t, 1, credits("fails-once"), "the failed attempt's write was rolled back")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]int{"once": 1, "fails-once": 2, "after": 1}, calls)
	require.True(t, sqlTxNil, "Context.Tx is nil under a pgx Beginner")
}

// The pgx.Tx ends the way a *sql.Tx does: once, with final.ErrTxDone after.
func TestTxEndsOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := pgxbus.New(e.svc, e.pool, amqp.NewProvider(testenv.AMQP(t)), final.DefaultOptions())
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })

	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	err = pgxbus.Transaction(ctx, b, tx, func(txBus *final.TxBus) error {
		require.NoError(t, txBus.Publish(e.topic, []byte("x")))
		require.Same(t, tx, pgxbus.Unwrap(txBus.DriverTx()))
		return txBus.Commit() // fn commits itself; Transaction leaves it
	})
	require.NoError(t, err)
	txBus := pgxbus.WithTx(ctx, b, tx)
	require.ErrorIs(t, txBus.Commit(), final.ErrTxDone)

	tx, err = e.pool.Begin(ctx)
	require.NoError(t, err)
	txBus = pgxbus.WithTx(ctx, b, tx)
	require.NoError(t, txBus.RollBack())
	require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxClosed)
	require.ErrorIs(t, pgxbus.Transaction(ctx, b, nil, func(*final.TxBus) error { return nil }), final.ErrNilTx)
}
