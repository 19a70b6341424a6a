package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/postgres"
)

// asRole opens the test database as a new login role that may read and
// write tables but not create any (PostgreSQL 15 and later give PUBLIC
// no CREATE on schema public); the role goes when t ends.
func asRole(t *testing.T, admin *sql.DB, tables ...string) *sql.DB {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "final_role_" + hex.EncodeToString(b[:])
	_, err := admin.Exec(`CREATE ROLE ` + role + ` LOGIN`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(`DROP OWNED BY ` + role)
		_, _ = admin.Exec(`DROP ROLE ` + role)
	})
	var canCreate bool
	require.NoError(t, admin.QueryRow(`SELECT has_schema_privilege($1, 'public', 'CREATE')`, role).Scan(&canCreate))
	if canCreate {
		// PostgreSQL before 15 grants it to PUBLIC; revoking it would
		// change the shared test database for everyone.
		t.Skip("every role may create tables in schema public here")
	}
	for _, table := range tables {
		_, err := admin.Exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON "` + table + `" TO ` + role)
		require.NoError(t, err)
	}
	cfg, err := pgx.ParseConfig(testenv.PostgresDSN())
	require.NoError(t, err)
	cfg.User = role
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

// An application role without the CREATE privilege starts against tables
// a deployment migrated already: Migrate runs no DDL when there is none
// to run.
func TestMigrateNeedsNoCreatePrivilegeWhenUpToDate(t *testing.T) {
	s, admin := newStore(t)
	inbox, err := postgres.NewInbox(admin, tableName(t, admin, "_inbox"))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, inbox.Migrate(ctx))
	db := asRole(t, admin, s.Table(), inbox.Table(), "final_schema_migrations", "final_topology", "final_redeliveries")

	app, err := postgres.New(db, s.Table(), postgres.Options{})
	require.NoError(t, err)
	require.NoError(t, app.Migrate(ctx))
	_, err = app.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
	require.NoError(t, err, "an identity column needs no grant on its sequence")
	recs, err := app.Claim(ctx, "a", 10, 0, time.Hour)
	require.NoError(t, err)
	require.Len(t, recs, 1)

	appInbox, err := postgres.NewInbox(db, inbox.Table())
	require.NoError(t, err)
	require.NoError(t, appInbox.Migrate(ctx))
}
