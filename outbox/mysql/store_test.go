package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/outboxtest"
)

func newStore(t *testing.T) (*mysql.Store, *sql.DB) {
	db := testenv.DB(t)
	table := "final_" + testenv.Service(t, db) + "_outbox"
	s, err := mysql.New(db, table, mysql.Options{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() { s.Close() })
	return s, db
}

func TestConformance(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) (outbox.Store, *sql.DB) { return newStore(t) }})
}

// otherTx is an outbox.Tx that is not a *sql.Tx to the store, as a
// driver's native transaction would be: Insert takes its generic path.
type otherTx struct{ outbox.Tx }

// The suite with transactions that Insert cannot prepare its statement on.
func TestConformanceOnAnotherTx(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{
		New: func(t *testing.T) (outbox.Store, *sql.DB) { return newStore(t) },
		Begin: func(ctx context.Context, db *sql.DB) (outbox.Tx, error) {
			tx, err := outbox.SQLBeginner(db).Begin(ctx)
			return otherTx{tx}, err
		},
	})
}

// The suite on a pool whose driver parses times (parseTime=true, common
// with ORMs) in the local zone: a claim's scan must page the same way.
func TestConformanceWithParseTime(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) (outbox.Store, *sql.DB) {
		dsn := testenv.MySQLDSN()
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		db, err := sql.Open("mysql", dsn+sep+"parseTime=true&loc=Local")
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		table := "final_" + testenv.Service(t, testenv.DB(t)) + "_outbox"
		s, err := mysql.New(db, table, mysql.Options{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, s.Migrate(context.Background()))
		t.Cleanup(func() { s.Close() })
		return s, db
	}})
}

func TestHostileTableNamesRefused(t *testing.T) {
	db := testenv.DB(t)
	for _, name := range []string{"", "x`; DROP TABLE users; --", "a b", "name'quote", "t\x00", string(make([]byte, 65))} {
		_, err := mysql.New(db, name, mysql.Options{})
		require.ErrorIs(t, err, outbox.ErrInvalidIdentifier, "name %q", name)
	}
	_, err := mysql.New(db, "final_order-svc.v2_outbox", mysql.Options{})
	require.NoError(t, err)
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	s, db := newStore(t)
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			other, err := mysql.New(db, s.Table(), mysql.Options{})
			if err == nil {
				err = other.Migrate(context.Background())
				other.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		require.NoError(t, <-errs)
	}
	var v int
	require.NoError(t, db.QueryRow("SELECT MAX(version) FROM final_schema_migrations WHERE table_name = ?", s.Table()).Scan(&v))
	require.Equal(t, mysql.SchemaVersion(), v)
}

// legacyMessage is the ancestor library's message as it sits in its rows.
type legacyMessage struct {
	UUID    string
	Topic   string
	Handler string
	SvcName string
	Header  map[string]interface{}
	Payload []byte
	Policy  *struct {
		Confirm bool
		Durable bool
		TTL     time.Duration
		Delay   int64
	}
}

func TestAncestorTableMigratedInPlace(t *testing.T) {
	db := testenv.DB(t)
	table := "final_" + testenv.Service(t, db) + "_outbox"
	_, err := db.Exec("CREATE TABLE `" + table + `` + "` (id bigint auto_increment primary key, message longblob null, status bigint null, create_at datetime(3) null, last_send_at datetime(3) null)")
	require.NoError(t, err)
	body, err := msgpack.Marshal(legacyMessage{UUID: "legacy-1", Topic: "orders.created", Header: map[string]interface{}{"record_id": 7}, Payload: []byte("old")})
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO `"+table+"` (message, status, create_at, last_send_at) VALUES (?, 0, NOW(3), NOW(3))", body)
	require.NoError(t, err)

	s, err := mysql.New(db, table, mysql.Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(context.Background()))

	recs, err := s.Claim(context.Background(), "me", 10, 0, time.Minute)
	require.NoError(t, err)
	require.Len(t, recs, 1, "the ancestor's pending row must be relayed")
	require.NoError(t, recs[0].Err)
	require.Equal(t, "legacy-1", recs[0].Message.UUID)
	require.Equal(t, "orders.created", recs[0].Message.Topic)
	require.Equal(t, "old", string(recs[0].Message.Payload))

	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = 'idx_final_available'`, table).Scan(&n))
	require.Positive(t, n, "the relay's scan index must exist")
}

func TestCorruptRowIsReportedNotFatal(t *testing.T) {
	s, db := newStore(t)
	_, err := db.Exec("INSERT INTO `"+s.Table()+"` (message, status, create_at) VALUES (?, 0, NOW(3))", []byte{0xc1, 0xff, 0x00})
	require.NoError(t, err)
	recs, err := s.Claim(context.Background(), "me", 10, 0, time.Minute)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Nil(t, recs[0].Message)
	require.True(t, errors.Is(recs[0].Err, errDecode()), "got %v", recs[0].Err)
}

func errDecode() error { return message.ErrDecode }

// A relay's failure message can hold any bytes: the cause is stored as
// ASCII (other characters escaped) without NUL, cut between characters,
// instead of the statement being refused (a strict server refuses text its
// column cannot hold: invalid UTF-8, or é in a latin1 column's neighbour
// U+FFFD) and with it the row's failure, or a held claim's whole batch,
// lost. The column here is latin1, as an ancestor table's may be.
func TestFailStoresAnyCause(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	_, err := db.Exec("ALTER TABLE `" + s.Table() + "` MODIFY last_error VARCHAR(1024) CHARACTER SET latin1 NULL")
	require.NoError(t, err)
	id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
	require.NoError(t, err)
	cause := "broker said \x00 \xff\xfe \U0001F600 " + strings.Repeat("é", 1000)
	require.NoError(t, s.Fail(ctx, "", []int64{id}, cause))
	var (
		stored   string
		attempts int
	)
	require.NoError(t, db.QueryRow("SELECT last_error, attempts FROM `"+s.Table()+"` WHERE id = ?", id).Scan(&stored, &attempts))
	require.Equal(t, 1, attempts)
	require.LessOrEqual(t, len(stored), 1024)
	require.True(t, strings.HasPrefix(stored, `broker said  \ufffd \U0001f600 \u00e9`), "stored %q", stored[:40])
	require.True(t, strings.HasSuffix(stored, `\u00e9`), "cut inside a character: %q", stored[len(stored)-10:])
}
