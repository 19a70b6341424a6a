package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
)

// immediate runs fn in a BEGIN IMMEDIATE transaction on a connection of
// its own. The transaction takes SQLite's one write lock before its first
// read, waiting for it up to the busy timeout, so nothing fn reads changes
// until it commits: this is what serialises claims (SQLite has no SKIP
// LOCKED, and needs none) and migrations, in this process and in every
// other one on the file.
//
// A DEFERRED transaction would not do: it reads under a snapshot and then
// fails at once with SQLITE_BUSY when it tries to write after another
// writer committed, without waiting. database/sql cannot ask for IMMEDIATE
// on every driver (modernc.org/sqlite begins DEFERRED unless the DSN says
// _txlock=immediate), so the statements are issued here, whatever the DSN.
func immediate(ctx context.Context, db *sql.DB, fn func(c *sql.Conn) error) (err error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	open := true // a transaction may be open on c
	defer func() {
		if err == nil || !open {
			return
		}
		// Rolled back even when ctx is done: a connection back in the
		// pool inside this transaction would hold the write lock for
		// good. If the rollback fails (there was no transaction, or the
		// connection broke), the connection is closed instead, which
		// ends any transaction it had.
		if _, rbErr := c.ExecContext(context.Background(), "ROLLBACK"); rbErr != nil {
			_ = c.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if _, err = c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		// SQLite's own refusal (SQLITE_BUSY past the busy timeout) opens
		// no transaction; any other error may have come after it began.
		_, refused := resultCode(err)
		open = !refused
		return err
	}
	if err = fn(c); err != nil {
		return err
	}
	_, err = c.ExecContext(ctx, "COMMIT")
	return err
}
