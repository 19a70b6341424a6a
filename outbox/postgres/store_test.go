package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/outbox/postgres"
)

// tableName returns a fresh table name "final_<random><suffix>", dropped
// with its records in the shared tables when t ends.
func tableName(t testing.TB, db *sql.DB, suffix string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "final_t" + hex.EncodeToString(b[:]) + suffix
	dropTables(t, db, name)
	return name
}

func dropTables(t testing.TB, db *sql.DB, names ...string) {
	t.Cleanup(func() {
		for _, name := range names {
			_, _ = db.Exec(`DROP TABLE IF EXISTS "` + name + `"`)
			_, _ = db.Exec(`DELETE FROM final_schema_migrations WHERE table_name = $1`, name)
			_, _ = db.Exec(`DELETE FROM final_topology WHERE outbox_table = $1`, name)
			_, _ = db.Exec(`DELETE FROM final_redeliveries WHERE outbox_table = $1`, name)
		}
	})
}

func newStore(t testing.TB) (*postgres.Store, *sql.DB) {
	return newStoreOn(t, testenv.Postgres(t))
}

func newStoreOn(t testing.TB, db *sql.DB) (*postgres.Store, *sql.DB) {
	s, err := postgres.New(db, tableName(t, db, "_outbox"), postgres.Options{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() { s.Close() })
	return s, db
}

func TestConformance(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) (outbox.Store, *sql.DB) { return newStore(t) }})
}

func TestHostileTableNamesRefused(t *testing.T) {
	db := testenv.Postgres(t)
	for _, name := range []string{"", `x"; DROP TABLE users; --`, "a b", "name'quote", "t\x00", string(make([]byte, 65))} {
		_, err := postgres.New(db, name, postgres.Options{})
		require.ErrorIs(t, err, outbox.ErrInvalidIdentifier, "name %q", name)
	}
	_, err := postgres.New(db, "final_order-svc.v2_outbox", postgres.Options{})
	require.NoError(t, err)
}

// PostgreSQL cuts a name of 64 bytes to 63 without an error, so two such
// names alike up to the cut would be one table: they are refused. Names
// of 63 bytes that differ only in their last byte are two tables, with
// indexes of their own (index names are unique per schema).
func TestTableNameOf64BytesRefused(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	long := "final_" + strings.Repeat("x", 57) + "1" // 64 bytes
	_, err := postgres.New(db, long, postgres.Options{})
	require.ErrorIs(t, err, outbox.ErrInvalidIdentifier)
	_, err = postgres.NewInbox(db, long)
	require.ErrorIs(t, err, outbox.ErrInvalidIdentifier)

	a, b := "final_"+strings.Repeat("y", 56)+"1", "final_"+strings.Repeat("y", 56)+"2" // 63 bytes
	dropTables(t, db, a, b)
	for _, name := range []string{a, b} {
		s, err := postgres.New(db, name, postgres.Options{})
		require.NoError(t, err, name)
		require.NoError(t, s.Migrate(ctx), name)
		_, err = s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
		require.NoError(t, err)
	}
	for _, name := range []string{a, b} {
		var indexes int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM pg_indexes WHERE tablename = $1`, name).Scan(&indexes))
		require.Equal(t, 3, indexes, "primary key, scan index and order index of %s", name)
		var rows int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM "`+name+`"`).Scan(&rows))
		require.Equal(t, 1, rows, "rows of %s", name)
	}
}

// Four instances migrating a table none of them created: the migrations
// are serialised by the advisory lock and applied once.
func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	db := testenv.Postgres(t)
	name := tableName(t, db, "_outbox")
	start := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.New(db, name, postgres.Options{})
			if err == nil {
				<-start
				err = s.Migrate(context.Background())
			}
			errs <- err
		}()
	}
	close(start)
	for range 4 {
		require.NoError(t, <-errs)
	}
	var versions, highest int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*), MAX(version) FROM final_schema_migrations WHERE table_name = $1`, name).
		Scan(&versions, &highest))
	require.Equal(t, postgres.SchemaVersion(), highest)
	require.Equal(t, len(postgresVersions()), versions, "each version recorded once")

	// A table dropped by hand is created again.
	_, err := db.Exec(`DROP TABLE "` + name + `"`)
	require.NoError(t, err)
	s, err := postgres.New(db, name, postgres.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	n, err := s.Len(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
}

func postgresVersions() []int {
	v := make([]int, postgres.SchemaVersion())
	for i := range v {
		v[i] = i + 1
	}
	return v
}

// Two owners claiming at once over keyed and unkeyed rows never get the
// same row, and between them claim every row.
func TestConcurrentOwnersNeverShareARow(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	const rows = 2000
	tx, err := db.Begin()
	require.NoError(t, err)
	for i := range rows {
		key := ""
		if i%2 == 0 {
			key = string(rune('a' + i%26))
		}
		m := message.New("topic.a", []byte("p"), message.WithKey(key))
		body, err := message.Marshal(m)
		require.NoError(t, err)
		_, err = s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: body, OrderKey: outbox.OrderKey(m.Topic, key)})
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())

	var (
		mu    sync.Mutex
		owner = map[int64]string{}
		dups  []int64
		wg    sync.WaitGroup
	)
	// A claim can come back empty while the other's transaction holds
	// the head rows of a key locked: each owner polls until every row is
	// claimed, or gives up after a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for _, o := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				recs, err := s.Claim(ctx, o, 37, 0, time.Hour)
				if err != nil {
					t.Errorf("Claim(%s): %v", o, err)
					return
				}
				if len(recs) == 0 {
					mu.Lock()
					finished := len(owner) == rows
					mu.Unlock()
					if finished {
						return
					}
					time.Sleep(5 * time.Millisecond) // polling interval
					continue
				}
				mu.Lock()
				for _, r := range recs {
					if _, ok := owner[r.ID]; ok {
						dups = append(dups, r.ID)
					}
					owner[r.ID] = o
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, dups, "rows claimed by both owners")
	require.Len(t, owner, rows)
}

// A relay's failure message can hold any bytes: the cause is stored as
// valid UTF-8 without NUL, cut at a character, instead of the statement
// being refused and the row's failure lost.
func TestFailStoresAnyCause(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
	require.NoError(t, err)
	cause := "broker said \x00 \xff\xfe " + strings.Repeat("é", 1000)
	require.NoError(t, s.Fail(ctx, "", []int64{id}, cause))
	var (
		stored   string
		attempts int
	)
	require.NoError(t, db.QueryRow(`SELECT last_error, attempts FROM "`+s.Table()+`" WHERE id = $1`, id).Scan(&stored, &attempts))
	require.Equal(t, 1, attempts)
	require.LessOrEqual(t, len(stored), 1024)
	require.True(t, strings.HasPrefix(stored, "broker said  \uFFFD"), "stored %q", stored[:20])
	require.True(t, strings.HasSuffix(stored, "é"), "cut inside a character")
}

// now() is the start of the transaction: a row inserted late in a long
// transaction must still wait AvailableIn from its insert, as the relay
// counts it, not from the transaction's start.
func TestInsertAvailableFromTheStatement(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	tx, err := db.Begin()
	require.NoError(t, err)
	defer tx.Rollback()
	_, err = tx.Exec(`SELECT pg_sleep(0.3)`) // the transaction is at least 300ms old
	require.NoError(t, err)
	id, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: []byte("x"), AvailableIn: 200 * time.Millisecond})
	require.NoError(t, err)
	var after time.Duration
	var micros int64
	require.NoError(t, tx.QueryRow(`SELECT (EXTRACT(EPOCH FROM available_at - now()) * 1000000)::bigint FROM "`+
		s.Table()+`" WHERE id = $1`, id).Scan(&micros))
	after = time.Duration(micros) * time.Microsecond
	require.GreaterOrEqual(t, after, 500*time.Millisecond,
		"available %s after the transaction began, want its age (>= 300ms) plus AvailableIn (200ms)", after)
}

func TestCorruptRowIsReportedNotFatal(t *testing.T) {
	s, db := newStore(t)
	_, err := db.Exec(`INSERT INTO "`+s.Table()+`" (message) VALUES ($1)`, []byte{0xc1, 0xff, 0x00})
	require.NoError(t, err)
	recs, err := s.Claim(context.Background(), "me", 10, 0, time.Minute)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Nil(t, recs[0].Message)
	require.True(t, errors.Is(recs[0].Err, message.ErrDecode), "got %v", recs[0].Err)
}

// A backlog of 1 MiB messages is claimed a few MiB at a time: each claim
// holds at most its byte bound plus one row, and the claims together take
// every row once, a row whose message is NULL included (it counts 0 bytes
// and is reported undecodable).
func TestClaimOfLargeRowsIsBoundedInBytes(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	const rows, size, bound = 20, 1 << 20, 3 << 20
	for range rows {
		body, err := message.Marshal(message.New("big", make([]byte, size)))
		require.NoError(t, err)
		_, err = s.Insert(ctx, nil, outbox.Row{Body: body})
		require.NoError(t, err)
	}
	_, err := db.Exec(`INSERT INTO "` + s.Table() + `" (message) VALUES (NULL)`)
	require.NoError(t, err)

	seen := map[int64]bool{}
	claims, undecodable := 0, 0
	for {
		recs, err := s.Claim(ctx, "me", 500, bound, time.Hour)
		require.NoError(t, err)
		if len(recs) == 0 {
			break
		}
		claims++
		held := 0
		for i, r := range recs {
			if i > 0 {
				require.Less(t, held, bound, "row %d claimed after the bound was reached", r.ID)
			}
			held += len(r.Body)
			require.False(t, seen[r.ID], "row %d claimed twice", r.ID)
			seen[r.ID] = true
			if r.Err != nil {
				undecodable++
			}
		}
		require.LessOrEqual(t, len(recs), 4, "a claim of 1 MiB rows under 3 MiB")
	}
	require.Len(t, seen, rows+1)
	require.Equal(t, 1, undecodable)
	require.GreaterOrEqual(t, claims, rows/4)
}

// A statement on a connection the server terminated (pg_terminate_backend,
// a failover) is reported as transient, or retried on a new connection
// by database/sql: never a permanent error.
func TestTerminatedConnectionIsTransient(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
	require.NoError(t, err)

	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	var pid int
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	other := testenv.Postgres(t)
	_, err = other.Exec(`SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, err)
	testenv.Eventually(t, 10*time.Second, func() bool {
		var n int
		_ = other.QueryRow(`SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n)
		return n == 0
	}, "backend %d still there", pid)
	// The store's statements run on the pool; this runs one on the dead
	// connection itself to see what the driver reports there.
	_, err = conn.ExecContext(ctx, `DELETE FROM "`+s.Table()+`" WHERE id = $1`, id)
	require.Error(t, err)
	t.Logf("on the terminated connection: %v", err)
	require.ErrorIs(t, postgres.ClassifyForTest("delete", err), outbox.ErrTransient, "error %v", err)
}

// Names are quoted: they keep their case and may hold '.' and '-', so
// two names that differ in case only are two tables.
func TestQuotedNamesKeepCase(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	base := tableName(t, db, "")
	upper, dotted := base+"_Order-svc.v2_outbox", base+"_order-svc.v2_outbox"
	dropTables(t, db, upper, dotted)
	for i, name := range []string{upper, dotted} {
		s, err := postgres.New(db, name, postgres.Options{})
		require.NoError(t, err)
		require.NoError(t, s.Migrate(ctx))
		for range i + 1 {
			_, err = s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
			require.NoError(t, err)
		}
		recs, err := s.Claim(ctx, "a", 10, 0, time.Hour)
		require.NoError(t, err)
		require.Len(t, recs, i+1, "rows of %s", name)
		in, err := postgres.NewInbox(db, name+"_inbox")
		require.NoError(t, err)
		dropTables(t, db, name+"_inbox")
		require.NoError(t, in.Migrate(ctx))
	}
}
