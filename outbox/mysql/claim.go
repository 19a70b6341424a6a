package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

// Claim implements outbox.Store. It runs in READ COMMITTED, so that it
// takes no gap locks that would stall business transactions inserting
// rows. It finds available rows by a scan that locks nothing, then locks
// them by id with SKIP LOCKED (see claimSteps.Candidates), so that concurrent
// claimers split the rows, and no row but those it takes is locked.
//
// Concurrent claimers could still deadlock (a trigger of the user's on
// the table, say): InnoDB then rolls one claim back whole, and it is
// simply tried again.
//
// The claim decides on the rows' sizes (LENGTH(message)). Its lock reads
// the messages of up to inlineBody bytes along (one statement less per
// claim); larger ones it reads for the rows it takes only, so a claim
// bounded by maxBytes reads no more than that of a backlog of large
// messages, plus at most limit × inlineBody bytes of small ones per scan
// (a claim makes a few scans, see claim.Rows, and a key's rows are read
// again as they are locked).
func (s *Store) Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	for attempt := 1; ; attempt++ {
		recs, err := s.claim(ctx, owner, limit, maxBytes, lease)
		if err == nil || attempt == maxClaimAttempts || !retryable(err) {
			return recs, err
		}
	}
}

const maxClaimAttempts = 5

func (s *Store) claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	recs, err := s.claimIn(ctx, tx, owner, limit, maxBytes, lease, false)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim commit: %w", err)
	}
	decode(recs)
	return recs, nil
}

// claimIn locks the rows of a claim in tx, which runs in READ COMMITTED,
// and returns them in id order, not yet decoded. It leases them for lease,
// unless hold is set: the rows are then held by tx alone (ClaimHeld).
func (s *Store) claimIn(ctx context.Context, tx *sql.Tx, owner string, limit, maxBytes int, lease time.Duration, hold bool) ([]outbox.Record, error) {
	taken, err := claim.Rows(ctx, &claimSteps{s: s, tx: tx, owner: owner, lease: lease, hold: hold}, limit, maxBytes)
	if err != nil || len(taken) == 0 {
		return nil, err
	}
	recs, err := s.bodies(ctx, tx, taken)
	if err != nil {
		return nil, err
	}
	sortByID(recs)
	return recs, nil
}

// claimSteps are one claim's statements (claim.Steps) in its transaction.
type claimSteps struct {
	s     *Store
	tx    *sql.Tx
	owner string
	lease time.Duration
	hold  bool
}

// decode decodes the messages of claimed rows, once, for the rows claimed
// only.
func decode(recs []outbox.Record) {
	for i := range recs {
		recs[i].Decode()
	}
}

// inlineBody is the largest message a claim's lock reads along with the
// row's other columns: a small message costs less read at once than by a
// statement of its own, and a lock reads at most limit × inlineBody bytes
// of messages the claim may then not take (past maxBytes). Larger ones
// are read for the rows taken only.
const inlineBody = 4096

var candidateColumns = `id, COALESCE(LENGTH(message), 0), attempts, order_key, ` +
	`CASE WHEN LENGTH(message) <= ` + strconv.Itoa(inlineBody) + ` THEN message END`

// scanCandidates reads rows of candidateColumns.
func (s *Store) scanCandidates(rows *sql.Rows, err error) ([]claim.Candidate, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer rows.Close()
	var cands []claim.Candidate
	for rows.Next() {
		var (
			c   claim.Candidate
			key sql.NullInt64
		)
		if err := rows.Scan(&c.ID, &c.Size, &c.Attempts, &key, &c.Body); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim scan: %w", err)
		}
		c.Key = key.Int64
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return cands, nil
}

// KeyRows reads each key's rows up to its top, in id order, with whether
// each is available and whether the owner leased it already: one index
// range per key, limit rows in all.
func (c *claimSteps) KeyRows(ctx context.Context, keys, tops, _ []int64, limit int) ([]claim.KeyRow, error) {
	var (
		b    strings.Builder
		args = []any{c.owner}
	)
	b.WriteString(`SELECT order_key, id, available_at <= NOW(6), claimed_by <=> ? FROM ` + c.s.t.q + ` WHERE `)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(`(order_key = ? AND id <= ?)`)
		args = append(args, k, tops[i])
	}
	b.WriteString(` ORDER BY order_key, id LIMIT ?`)
	rows, err := c.tx.QueryContext(ctx, b.String(), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	defer rows.Close()
	var found []claim.KeyRow
	for rows.Next() {
		var r claim.KeyRow
		if err := rows.Scan(&r.Key, &r.ID, &r.Ready, &r.Mine); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim order: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	return found, nil
}

// Lock locks those of rows still available that no other transaction
// holds.
func (c *claimSteps) Lock(ctx context.Context, rows []claim.Candidate) ([]claim.Candidate, error) {
	return c.s.lockAvailable(ctx, c.tx, claim.IDs(rows))
}

// Take leases the rows a pass takes; a held claim holds them locked
// already.
func (c *claimSteps) Take(ctx context.Context, taken []claim.Candidate) error {
	if c.hold {
		return nil
	}
	return c.s.lease(ctx, c.tx, c.owner, taken, c.lease)
}

// lockAvailable locks the rows of ids that are available and that no
// other transaction holds, and returns them.
func (s *Store) lockAvailable(ctx context.Context, tx *sql.Tx, ids []int64) ([]claim.Candidate, error) {
	return s.scanCandidates(tx.QueryContext(ctx, `SELECT `+candidateColumns+` FROM `+byIDs(s.t.q)+
		` WHERE available_at <= NOW(6) FOR UPDATE SKIP LOCKED`, idJSON(ids)))
}

// lease hides the claimed rows from other claimers until lease has passed.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, owner string, taken []claim.Candidate, lease time.Duration) error {
	if _, err := tx.ExecContext(ctx, `UPDATE `+byIDs(s.t.q)+
		` SET available_at = NOW(6) + INTERVAL ? MICROSECOND, claimed_by = ?, last_send_at = NOW(3)`, idJSON(claim.IDs(taken)), lease.Microseconds(), owner); err != nil {
		return fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return nil
}

// bodies returns the records of the rows taken, which the claim holds
// locked: with the messages the scan read along, and the larger ones read
// now.
func (s *Store) bodies(ctx context.Context, tx *sql.Tx, taken []claim.Candidate) ([]outbox.Record, error) {
	recs := make([]outbox.Record, 0, len(taken))
	byID := map[int64]claim.Candidate{}
	var ids []int64
	for _, c := range taken {
		if c.Body == nil && c.Size > 0 { // larger than inlineBody
			byID[c.ID] = c
			ids = append(ids, c.ID)
			continue
		}
		recs = append(recs, outbox.Record{ID: c.ID, Body: c.Body, OrderKey: c.Key, Attempts: c.Attempts})
	}
	if len(ids) == 0 {
		return recs, nil
	}
	in, args := inList(ids)
	rows, err := tx.QueryContext(ctx, `SELECT id, message FROM `+s.t.q+` WHERE id IN `+in, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.Body); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
		}
		c := byID[r.ID]
		r.OrderKey, r.Attempts = c.Key, c.Attempts
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
	}
	return recs, nil
}

// Candidates returns up to limit available rows, locked, whose order key
// is not in skip and which are not among taken (the claim's own rows,
// which its scan sees again and its lock would return again), first
// available first; it stops at the page that brings them to budget bytes
// (0: no bound).
//
// The scan takes no lock (see byIDs) and reads no message: a size needs
// the row, and a large message's size its whole value, so sizes are read
// as the rows are locked. So it also sees the rows other
// claims hold: a held claim's for as long as it lasts, a leasing claim's
// until it commits. Those of this store's own held claims (claim.Own) it
// leaves out, by ranges of ids in the statement and the rest before the
// lock; the lock passes over the others. The scan goes on past them
// a page at a time (a cursor on available_at, id) for up to maxScanPages
// pages, so that concurrent claims take the rows that follow each other's.
// The rows of the last page past budget stay locked and are not taken (see
// outbox.Holder).
func (c *claimSteps) Candidates(ctx context.Context, limit, budget int, skip []int64, taken []claim.Candidate) ([]claim.Candidate, error) {
	mine := make(map[int64]bool, len(taken))
	for _, t := range taken {
		mine[t.ID] = true
	}
	own := c.s.own.Held()
	var (
		got   []claim.Candidate
		spent int
		after *scanCursor
	)
	full := func() bool { return len(got) >= limit || (budget > 0 && spent >= budget) }
	for page := 0; page < maxScanPages && !full(); page++ {
		want := limit - len(got)
		scanned, err := c.s.scanAvailable(ctx, c.tx, want, skip, own.Ranges, after)
		if err != nil {
			return nil, err
		}
		var ids []int64
		for _, at := range scanned {
			if !mine[at.id] && !own.Has(at.id) {
				ids = append(ids, at.id)
			}
		}
		if len(ids) > 0 {
			locked, err := c.s.lockAvailable(ctx, c.tx, ids)
			if err != nil {
				return nil, err
			}
			for _, l := range locked {
				mine[l.ID] = true
				spent += l.Size
			}
			got = append(got, locked...)
		}
		if len(scanned) < want {
			break // the scan reached the end of the available rows
		}
		after = &scanned[len(scanned)-1]
	}
	return got, nil
}

// maxScanPages bounds the pages of one claim's scan: the rows other claims
// hold come first in it (each claim's rows are a page of up to its
// limit), so this many claims holding rows at once (16 instances with the
// default OutboxHeldClaims) still leave the next one rows to take.
const maxScanPages = 32

// scanCursor is where a claim's scan stopped: the available_at (as text
// the statement formats, whatever the driver's parseTime) and id of the
// last row it considered.
type scanCursor struct {
	at string
	id int64
}

// scanAvailable reads the positions, not the messages, and without
// locking them, of up to limit available rows past after (nil: from the
// first), whose order key is not in skip and whose id is in none of
// except, first available first. The index it scans holds the id, so the
// rows left out by except are passed over in the index: neither looked up
// nor returned to be locked.
func (s *Store) scanAvailable(ctx context.Context, tx *sql.Tx, limit int, skip []int64, except []claim.Range, after *scanCursor) ([]scanCursor, error) {
	query := `SELECT id, DATE_FORMAT(available_at, '%Y-%m-%d %H:%i:%s.%f') FROM ` + s.t.q + ` WHERE available_at <= NOW(6)`
	var args []any
	if after != nil {
		query += ` AND (available_at > ? OR (available_at = ? AND id > ?))`
		args = append(args, after.at, after.at, after.id)
	}
	for _, r := range except {
		query += ` AND id NOT BETWEEN ? AND ?`
		args = append(args, r.First, r.Last)
	}
	if len(skip) > 0 {
		in, keyArgs := inList(skip)
		query += ` AND (order_key IS NULL OR order_key NOT IN ` + in + `)`
		args = append(args, keyArgs...)
	}
	query += ` ORDER BY available_at, id LIMIT ?`
	rows, err := tx.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer rows.Close()
	var found []scanCursor
	for rows.Next() {
		var r scanCursor
		if err := rows.Scan(&r.id, &r.at); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim scan: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return found, nil
}
