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

// A large message is stored compressed with lz4 where the server has it
// (pglz, PostgreSQL's default, costs 20–30 times its CPU), in a table
// created now and in one migrated from version 1; a server without lz4
// keeps its default.
func TestMessagesAreCompressedWithLZ4(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	name := tableName(t, db, "_outbox")
	s, err := postgres.New(db, name, postgres.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Migrate(ctx))

	var lz4 bool
	require.NoError(t, db.QueryRow(`SELECT EXISTS (SELECT FROM pg_settings
		WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))`).Scan(&lz4))
	want := "pglz"
	if lz4 {
		want = "lz4"
	}

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
	require.Equal(t, want, stored(), "a new table")

	// The table as version 1 left it: pglz, the version 2 record gone.
	_, err = db.Exec(`ALTER TABLE "` + name + `" ALTER COLUMN message SET COMPRESSION pglz`)
	require.NoError(t, err)
	_, err = db.Exec(`DELETE FROM final_schema_migrations WHERE table_name = $1 AND version > 1`, name)
	require.NoError(t, err)
	require.Equal(t, "pglz", stored(), "the table at version 1")
	require.NoError(t, s.Migrate(ctx))
	require.Equal(t, want, stored(), "the table migrated from version 1")
}
