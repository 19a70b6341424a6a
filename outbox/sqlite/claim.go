package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

// Claim implements outbox.Store, with the same rules as the MySQL store:
// a key's rows in id order, first available first otherwise, and the
// maxBytes budget counted on length(message).
//
// The claim runs in a BEGIN IMMEDIATE transaction: it holds SQLite's write
// lock from its first read to its commit, so no other claim, in this
// process or another, reads or changes the rows meanwhile, and what it
// reads needs no locking row by row. The rows it takes are leased
// (claimed_by, available_at) and their messages read back by one UPDATE …
// RETURNING. A claim waits for the write lock up to the busy timeout, for
// instance behind a business transaction that inserted into the outbox.
func (s *Store) Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	var recs []outbox.Record
	err := immediate(ctx, s.db, func(c *sql.Conn) error {
		var err error
		recs, err = s.claim(ctx, c, owner, limit, maxBytes, lease)
		return err
	})
	if err != nil {
		return nil, wrapError("claim", err)
	}
	slices.SortFunc(recs, func(a, b outbox.Record) int { return cmp.Compare(a.ID, b.ID) })
	for i := range recs { // decoded once, for the rows claimed only
		recs[i].Decode()
	}
	return recs, nil
}

// claim does Claim's work inside its transaction.
func (s *Store) claim(ctx context.Context, c *sql.Conn, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	// Taken once the write lock is held: no claim can have leased a row
	// after this instant, whatever the wait for the lock.
	steps := &claimSteps{s: s, c: c, now: time.Now().UnixMicro(), owner: owner, lease: lease}
	if _, err := claim.Rows(ctx, steps, limit, maxBytes); err != nil {
		return nil, err
	}
	return steps.recs, nil
}

// claimSteps are one claim's statements (claim.Steps) under the write
// lock: what they read is what the claim leases, so nothing is locked row
// by row.
type claimSteps struct {
	s     *Store
	c     *sql.Conn
	now   int64 // µs since the epoch
	owner string
	lease time.Duration
	recs  []outbox.Record // the rows leased, with their messages
}

// Candidates returns up to limit rows available at now, first available
// first, leaving out the order keys in skip and the rows in taken (a lease
// of zero leaves a row taken by this claim available at now).
func (st *claimSteps) Candidates(ctx context.Context, limit, _ int, skip []int64, taken []claim.Candidate) ([]claim.Candidate, error) {
	query := `SELECT id, COALESCE(length(message), 0), order_key FROM ` + st.s.t.q + ` WHERE available_at <= ?`
	args := []any{st.now}
	if len(skip) > 0 {
		in, keyArgs := inList(skip)
		query += ` AND (order_key IS NULL OR order_key NOT IN ` + in + `)`
		args = append(args, keyArgs...)
	}
	if len(taken) > 0 {
		in, idArgs := inList(claim.IDs(taken))
		query += ` AND id NOT IN ` + in
		args = append(args, idArgs...)
	}
	query += ` ORDER BY available_at, id LIMIT ?`
	rows, err := st.c.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cands []claim.Candidate
	for rows.Next() {
		var (
			cand claim.Candidate
			key  sql.NullInt64
		)
		if err := rows.Scan(&cand.ID, &cand.Size, &key); err != nil {
			return nil, err
		}
		cand.Key = key.Int64
		cands = append(cands, cand)
	}
	return cands, rows.Err()
}

// KeyRows reads each key's rows up to its top, in id order, with whether
// each is available at now and whether the owner leased it already, and
// their sizes: one range of the (order_key, id) index per key, limit rows
// in all.
func (st *claimSteps) KeyRows(ctx context.Context, keys, tops, _ []int64, limit int) ([]claim.KeyRow, error) {
	// The keys are a VALUES list joined to the (order_key, id) index: one
	// range search per key, where SQLite plans an OR of many ranges
	// slowly.
	var (
		b    strings.Builder
		args = make([]any, 0, 2*len(keys)+3)
	)
	b.WriteString(`WITH k(key, hi) AS (VALUES `)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?,?)`)
		args = append(args, k, tops[i])
	}
	b.WriteString(`) SELECT t.order_key, t.id, t.available_at <= ?, t.claimed_by IS ?, COALESCE(length(t.message), 0)
		FROM k CROSS JOIN ` + st.s.t.q + ` AS t ON t.order_key = k.key AND t.id <= k.hi`)
	// Rows held back by others can make a key's range long; a truncated
	// range only shortens the runs taken from it.
	b.WriteString(` ORDER BY t.order_key, t.id LIMIT ?`)
	args = append(args, st.now, st.owner, limit)
	rows, err := st.c.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var found []claim.KeyRow
	for rows.Next() {
		var r claim.KeyRow
		if err := rows.Scan(&r.Key, &r.ID, &r.Ready, &r.Mine, &r.Size); err != nil {
			return nil, err
		}
		found = append(found, r)
	}
	return found, rows.Err()
}

// Lock returns rows as they are: the claim holds the write lock.
func (st *claimSteps) Lock(_ context.Context, rows []claim.Candidate) ([]claim.Candidate, error) {
	return rows, nil
}

// Take leases the rows a pass takes and reads them back with their
// messages.
func (st *claimSteps) Take(ctx context.Context, taken []claim.Candidate) error {
	recs, err := st.s.lease(ctx, st.c, st.now, st.owner, taken, st.lease)
	st.recs = append(st.recs, recs...)
	return err
}

// lease hides the rows taken from other claimers until lease has passed,
// and returns them with their messages.
func (s *Store) lease(ctx context.Context, c *sql.Conn, now int64, owner string, taken []claim.Candidate, lease time.Duration) ([]outbox.Record, error) {
	in, idArgs := inList(claim.IDs(taken))
	args := append([]any{now + lease.Microseconds(), owner, now}, idArgs...)
	rows, err := c.QueryContext(ctx, `UPDATE `+s.t.q+` SET available_at = ?, claimed_by = ?, last_send_at = ?
		WHERE id IN `+in+` RETURNING id, message, attempts, COALESCE(order_key, 0)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := make([]outbox.Record, 0, len(taken))
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.Body, &r.Attempts, &r.OrderKey); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}
