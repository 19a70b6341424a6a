package final_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver under test

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/outbox/sqlite"
)

// The bus on PostgreSQL, with its dialect recognised from the pgx driver.
func TestBusOnPostgres(t *testing.T) {
	db := testenv.Postgres(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	svc := "p" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		for _, table := range []string{"final_" + svc + "_outbox", "final_" + svc + "_inbox"} {
			_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
			_, _ = db.Exec(`DELETE FROM final_schema_migrations WHERE table_name = $1`, table)
			_, _ = db.Exec(`DELETE FROM final_topology WHERE outbox_table = $1`, table)
			_, _ = db.Exec(`DELETE FROM final_redeliveries WHERE outbox_table = $1`, table)
		}
	})
	busRoundTrip(t, db, svc, "$1")
}

// The bus on an SQLite file, with its dialect recognised from the
// modernc.org/sqlite driver.
func TestBusOnSQLite(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "app.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	busRoundTrip(t, db, testenv.Service(t, nil), "?")
}

// busRoundTrip runs a bus of svc on db, whose placeholder is ph: a
// transaction's message is delivered if and only if it commits, the outbox
// empties, and an Inbox handler's write happens once although its message
// comes twice, in the handler's transaction.
func busRoundTrip(t *testing.T, db *sql.DB, svc, ph string) {
	url := testenv.AMQP(t)
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: svc})...)
	biz, credits := `"biz_`+svc+`"`, `"credits_`+svc+`"` // credits: no unique key, only the inbox keeps a duplicate out
	_, err := db.Exec(`CREATE TABLE ` + biz + ` (ref TEXT PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE ` + credits + ` (ref TEXT NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + biz)
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + credits)
	})

	topic, credited := svc+".created", svc+".credited"
	rec := newRecorder()
	var inboxCalls atomic.Int64
	// One worker: the service queue is handled in order, so the message
	// after the duplicate is handled after it.
	b := final.New(svc, db, amqp.NewProvider(url), testOptions(t).WithNumSubscriber(1))
	b.Subscribe(topic).Handler(rec.handle)
	b.Subscribe(credited).Inbox().Handler(func(c *final.Context) error {
		inboxCalls.Add(1)
		_, err := c.Tx().Exec(`INSERT INTO `+credits+` (ref) VALUES (`+ph+`)`, string(c.Message.Payload))
		return err
	})
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })

	var committed []string
	for i := 0; i < 20; i++ {
		for _, fail := range []error{nil, errors.New("rolled back")} {
			ref := fmt.Sprintf("r%d-%v", i, fail == nil)
			tx, err := db.Begin()
			require.NoError(t, err)
			err = b.Transaction(tx, func(txBus *final.TxBus) error {
				if _, err := tx.Exec(`INSERT INTO `+biz+` (ref) VALUES (`+ph+`)`, ref); err != nil {
					return err
				}
				if err := txBus.Publish(topic, []byte(ref)); err != nil {
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
	rec.waitAll(t, committed, 30*time.Second)
	var rows int
	testenv.Eventually(t, 20*time.Second, func() bool {
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM "final_`+svc+`_outbox"`).Scan(&rows))
		return rows == 0
	}, "outbox empty")
	got := rec.tally(committed)
	t.Logf("%s: %s outbox_left=%d", t.Name(), got, rows)
	require.Zero(t, got.lost)
	require.Zero(t, got.phantom)

	m := message.New(credited, []byte("once"))
	require.NoError(t, b.PublishMessage(m))
	dup := message.New(credited, []byte("once"))
	dup.UUID = m.UUID
	require.NoError(t, b.PublishMessage(dup))
	require.NoError(t, b.Publish(credited, []byte("after"))) // handled after the duplicate
	count := func(ref string) int {
		var n int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM `+credits+` WHERE ref = `+ph, ref).Scan(&n))
		return n
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return count("after") == 1 }, "the message after the duplicate handled")
	require.Equal(t, 1, count("once"), "the duplicate was acknowledged without a second write")
	require.Equal(t, int64(2), inboxCalls.Load())
}
