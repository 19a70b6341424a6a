package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/finalbus/final/outbox"
)

// Claim implements outbox.Store. It runs in READ COMMITTED, so that it
// takes no gap locks that would stall business transactions inserting
// rows. It finds available rows by a scan that locks nothing, then locks
// them by id with SKIP LOCKED (see candidates), so that concurrent
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
// (a claim makes up to maxClaimPasses scans, and a key's rows are read
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
	var (
		taken []candidate
		bytes int
		seen  []int64 // order keys handled by an earlier pass
	)
	enough := func() bool { return maxBytes > 0 && bytes >= maxBytes }
	// Rows of a key held back by an earlier row stay at the head of the
	// scan; the next pass looks past the keys seen so far, so that a key
	// stuck behind a failing row does not stall the others.
	for pass := 0; pass < maxClaimPasses && len(taken) < limit && !enough(); pass++ {
		budget := 0 // bytes the pass may still lock; 0: no bound
		if maxBytes > 0 {
			budget = maxBytes - bytes
		}
		cands, err := s.candidates(ctx, tx, limit-len(taken), budget, seen, taken)
		if err != nil {
			return nil, err
		}
		if len(cands) == 0 {
			break
		}
		ok, keys, heldBack, err := s.inOrder(ctx, tx, owner, cands)
		if err != nil {
			return nil, err
		}
		// Cut at maxBytes in id order: what a key loses is the end of its
		// run, so the rows taken still keep the key's order.
		slices.SortFunc(ok, func(a, b candidate) int { return cmp.Compare(a.id, b.id) })
		n := 0
		for n < len(ok) && !enough() {
			bytes += ok[n].size
			n++
		}
		if ok = ok[:n]; len(ok) > 0 {
			if !hold {
				if err := s.lease(ctx, tx, owner, ok, lease); err != nil {
					return nil, err
				}
			}
			taken = append(taken, ok...)
		}
		if !heldBack {
			break // no key was held back: the scan is complete
		}
		seen = append(seen, keys...)
	}
	if len(taken) == 0 {
		return nil, nil
	}
	recs, err := s.bodies(ctx, tx, taken)
	if err != nil {
		return nil, err
	}
	sortByID(recs)
	return recs, nil
}

// decode decodes the messages of claimed rows, once, for the rows claimed
// only.
func decode(recs []outbox.Record) {
	for i := range recs {
		recs[i].Decode()
	}
}

// candidate is a row a claim may take: what the claim decides on, without
// the message, which is read for the rows taken only.
type candidate struct {
	id, key  int64 // key: the order key, 0 for none
	attempts int
	size     int // bytes of the stored message
	// body is the stored message when the scan read it along (at most
	// inlineBody bytes); nil when it is larger, and read for the rows
	// taken only.
	body []byte
}

// maxClaimPasses bounds the scans of one claim that look past held-back
// keys.
const maxClaimPasses = 4

// maxOrderScan bounds the rows a claim reads to put a key's rows in order,
// per candidate.
const maxOrderScan = 8

// inlineBody is the largest message a claim's lock reads along with the
// row's other columns: a small message costs less read at once than by a
// statement of its own, and a lock reads at most limit × inlineBody bytes
// of messages the claim may then not take (past maxBytes). Larger ones
// are read for the rows taken only.
const inlineBody = 4096

var candidateColumns = `id, COALESCE(LENGTH(message), 0), attempts, order_key, ` +
	`CASE WHEN LENGTH(message) <= ` + strconv.Itoa(inlineBody) + ` THEN message END`

// scanCandidates reads rows of candidateColumns.
func (s *Store) scanCandidates(rows *sql.Rows, err error) ([]candidate, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer rows.Close()
	var cands []candidate
	for rows.Next() {
		var (
			c   candidate
			key sql.NullInt64
		)
		if err := rows.Scan(&c.id, &c.size, &c.attempts, &key, &c.body); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim scan: %w", err)
		}
		c.key = key.Int64
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return cands, nil
}

// inOrder returns the rows of cands the claim may take, in their place the
// rows that keep each key in order, the order keys among cands, and
// whether any of those keys yielded nothing.
//
// The scan finds rows first available first, but a key's rows must go in
// id order. So for each key among cands, the claim takes the key's first
// rows by id instead, as many as it has candidates, up to the first one
// that is not available or is locked by another claim. Rows still leased
// to owner are passed over: owner is sending them already, ahead of these.
func (s *Store) inOrder(ctx context.Context, tx *sql.Tx, owner string, cands []candidate) (ok []candidate, keys []int64, heldBack bool, err error) {
	perKey := map[int64]int{}    // candidates by key
	highest := map[int64]int64{} // highest candidate id by key
	for _, c := range cands {
		if c.key == 0 {
			ok = append(ok, c)
			continue
		}
		if perKey[c.key] == 0 {
			keys = append(keys, c.key)
		}
		perKey[c.key]++
		highest[c.key] = max(highest[c.key], c.id)
	}
	if len(keys) == 0 {
		return ok, nil, false, nil
	}

	// Each key's rows up to its highest candidate, in id order, with
	// whether each is available and whether owner leased it already: one
	// index range per key.
	var (
		b    strings.Builder
		args = []any{owner}
	)
	b.WriteString(`SELECT order_key, id, available_at <= NOW(6), claimed_by <=> ? FROM ` + s.t.q + ` WHERE `)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(`(order_key = ? AND id <= ?)`)
		args = append(args, k, highest[k])
	}
	// Rows held back by others can make a key's range long; a truncated
	// range only shortens the runs taken from it.
	b.WriteString(` ORDER BY order_key, id LIMIT ?`)
	args = append(args, maxOrderScan*len(cands))
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, false, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	type head struct {
		id          int64
		ready, mine bool
	}
	heads := map[int64][]head{}
	for rows.Next() {
		var (
			k int64
			h head
		)
		if err := rows.Scan(&k, &h.id, &h.ready, &h.mine); err != nil {
			rows.Close()
			return nil, nil, false, fmt.Errorf("outbox/mysql: claim order: %w", err)
		}
		heads[k] = append(heads[k], h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, false, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	// The run of each key: its available rows from the lowest on, passing
	// over those owner is sending already, at most as many as it has
	// candidates.
	var wanted []int64
	for _, k := range keys {
		run := heads[k][:0]
		for _, h := range heads[k] {
			if h.mine && !h.ready {
				continue
			}
			if !h.ready || len(run) == perKey[k] {
				break
			}
			run = append(run, h)
			wanted = append(wanted, h.id)
		}
		heads[k] = run
	}
	if len(wanted) == 0 {
		return ok, keys, true, nil
	}

	// Lock them; one locked by another claim, or leased meanwhile, ends
	// its key's run.
	locked, err := s.lockAvailable(ctx, tx, wanted)
	if err != nil {
		return nil, nil, false, err
	}
	byID := make(map[int64]candidate, len(locked))
	for _, c := range locked {
		byID[c.id] = c
	}
	for _, k := range keys {
		n := 0
		for _, h := range heads[k] {
			c, got := byID[h.id]
			if !got {
				break
			}
			ok = append(ok, c)
			n++
		}
		if n == 0 {
			heldBack = true
		}
	}
	return ok, keys, heldBack, nil
}

// lockAvailable locks the rows of ids that are available and that no
// other transaction holds, and returns them.
func (s *Store) lockAvailable(ctx context.Context, tx *sql.Tx, ids []int64) ([]candidate, error) {
	return s.scanCandidates(tx.QueryContext(ctx, `SELECT `+candidateColumns+` FROM `+byIDs(s.t.q)+
		` WHERE available_at <= NOW(6) FOR UPDATE SKIP LOCKED`, idJSON(ids)))
}

// lease hides the claimed rows from other claimers until lease has passed.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, owner string, taken []candidate, lease time.Duration) error {
	ids := make([]int64, len(taken))
	for i, c := range taken {
		ids[i] = c.id
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+byIDs(s.t.q)+
		` SET available_at = NOW(6) + INTERVAL ? MICROSECOND, claimed_by = ?, last_send_at = NOW(3)`, idJSON(ids), lease.Microseconds(), owner); err != nil {
		return fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return nil
}

// bodies returns the records of the rows taken, which the claim holds
// locked: with the messages the scan read along, and the larger ones read
// now.
func (s *Store) bodies(ctx context.Context, tx *sql.Tx, taken []candidate) ([]outbox.Record, error) {
	recs := make([]outbox.Record, 0, len(taken))
	byID := map[int64]candidate{}
	var ids []int64
	for _, c := range taken {
		if c.body == nil && c.size > 0 { // larger than inlineBody
			byID[c.id] = c
			ids = append(ids, c.id)
			continue
		}
		recs = append(recs, outbox.Record{ID: c.id, Body: c.body, OrderKey: c.key, Attempts: c.attempts})
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
		r.OrderKey, r.Attempts = c.key, c.attempts
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
	}
	return recs, nil
}

// candidates returns up to limit available rows, locked, whose order key
// is not in skip and which are not among taken (the claim's own rows,
// which its scan sees again and its lock would return again), first
// available first; it stops at the page that brings them to budget bytes
// (0: no bound).
//
// The scan takes no lock (see byIDs) and reads no message: a size needs
// the row, and a large message's size its whole value, so sizes are read
// as the rows are locked. So it also sees the rows other
// claims hold: a held claim's for as long as it lasts, a leasing claim's
// until it commits. The lock passes over them. The scan goes on past them
// a page at a time (a cursor on available_at, id) for up to maxScanPages
// pages, so that concurrent claims take the rows that follow each other's.
// The rows of the last page past budget stay locked and are not taken (see
// outbox.Holder).
func (s *Store) candidates(ctx context.Context, tx *sql.Tx, limit, budget int, skip []int64, taken []candidate) ([]candidate, error) {
	mine := make(map[int64]bool, len(taken))
	for _, c := range taken {
		mine[c.id] = true
	}
	var (
		got   []candidate
		spent int
		after *scanCursor
	)
	full := func() bool { return len(got) >= limit || (budget > 0 && spent >= budget) }
	for page := 0; page < maxScanPages && !full(); page++ {
		want := limit - len(got)
		scanned, err := s.scanAvailable(ctx, tx, want, skip, after)
		if err != nil {
			return nil, err
		}
		var ids []int64
		for _, at := range scanned {
			if !mine[at.id] {
				ids = append(ids, at.id)
			}
		}
		if len(ids) > 0 {
			locked, err := s.lockAvailable(ctx, tx, ids)
			if err != nil {
				return nil, err
			}
			for _, c := range locked {
				mine[c.id] = true
				spent += c.size
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
// first), whose order key is not in skip, first available first.
func (s *Store) scanAvailable(ctx context.Context, tx *sql.Tx, limit int, skip []int64, after *scanCursor) ([]scanCursor, error) {
	query := `SELECT id, DATE_FORMAT(available_at, '%Y-%m-%d %H:%i:%s.%f') FROM ` + s.t.q + ` WHERE available_at <= NOW(6)`
	var args []any
	if after != nil {
		query += ` AND (available_at > ? OR (available_at = ? AND id > ?))`
		args = append(args, after.at, after.at, after.id)
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
