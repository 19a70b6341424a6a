package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/postgres"
)

// A large message is stored compressed with lz4 in a table Migrate
// creates, where the server has lz4 (pglz, PostgreSQL's default, costs
// 22–32 times its CPU); a server without lz4 keeps its default; and a table
// that exists already is left as it is (no DDL on an existing table).
func TestMessagesAreCompressedWithLZ4(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	var version int
	require.NoError(t, db.QueryRow(`SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 140000 {
		t.Skipf("PostgreSQL %d compresses with pglz only, and has no pg_column_compression to check", version)
	}
	var lz4 bool
	require.NoError(t, db.QueryRow(`SELECT EXISTS (SELECT FROM pg_settings
		WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))`).Scan(&lz4))
	want := "pglz"
	if lz4 {
		want = "lz4"
	} else {
		t.Log("this server has no lz4: checking that the table keeps the server's default, pglz")
	}

	name := tableName(t, db, "_outbox")
	s, err := postgres.New(db, name, postgres.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Migrate(ctx))

	stored := func() string {
		t.Helper()
		body, err := message.Marshal(message.New("topic.big", make([]byte, 64<<10)))
		require.NoError(t, err)
		tx, err := db.Begin()
		require.NoError(t, err)
		_, err = s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: body})
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
		var method string
		require.NoError(t, db.QueryRow(`SELECT pg_column_compression(message) FROM "`+name+`" ORDER BY id DESC LIMIT 1`).Scan(&method))
		return method
	}
	require.Equal(t, want, stored(), "a table Migrate created")

	// A table an earlier version created (pglz) and recorded: Migrate
	// leaves it as it is.
	_, err = db.Exec(`ALTER TABLE "` + name + `" ALTER COLUMN message SET COMPRESSION pglz`)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	require.Equal(t, "pglz", stored(), "a table that existed")
}
