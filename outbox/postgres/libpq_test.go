package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/outbox/postgres"
)

// libpq opens the test database through github.com/lib/pq, the other
// database/sql driver the store supports: the store passes no
// driver-specific values (arrays are text, keys are []byte).
func libpq(t testing.TB) *sql.DB {
	t.Helper()
	testenv.Postgres(t) // skips, or fails under CI=true, without PostgreSQL
	db, err := sql.Open("postgres", testenv.PostgresDSN())
	require.NoError(t, err)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformanceLibPQ(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) (outbox.Store, *sql.DB) { return newStoreOn(t, libpq(t)) }})
}

func TestInboxConformanceLibPQ(t *testing.T) {
	outboxtest.RunInbox(t, outboxtest.InboxHarness{New: func(t *testing.T) (outbox.Inbox, *sql.DB) { return newInboxOn(t, libpq(t)) }})
}

// lib/pq's errors carry their SQLSTATE too: a lock timeout is transient.
func TestLockTimeoutIsTransientLibPQ(t *testing.T) {
	db := libpq(t)
	s, _ := newStoreOn(t, db)
	ctx := context.Background()
	id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
	require.NoError(t, err)

	// An open transaction holds the row; a Delete that may wait 50ms only
	// fails with lock_not_available (55P03).
	holder, err := db.Begin()
	require.NoError(t, err)
	defer holder.Rollback()
	_, err = holder.Exec(`SELECT 1 FROM "`+s.Table()+`" WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, `SET lock_timeout = '50ms'`)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, `DELETE FROM "`+s.Table()+`" WHERE id = $1`, id)
	var pqErr *pq.Error
	require.True(t, errors.As(err, &pqErr), "error %v", err)
	require.ErrorIs(t, postgres.ClassifyForTest("delete", err), outbox.ErrTransient, "error %v", err)

	require.NoError(t, holder.Rollback())
	require.NoError(t, s.Delete(ctx, []int64{id}))
	recs, err := s.Claim(ctx, "a", 10, 0, time.Minute)
	require.NoError(t, err)
	require.Empty(t, recs)
}
