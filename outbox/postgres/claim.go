package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/finalbus/final/outbox"
)

// Claim implements outbox.Store. It runs in READ COMMITTED and locks rows
// with FOR UPDATE SKIP LOCKED, so that concurrent claimers split the rows
// instead of waiting for each other; the lease it writes then hides the
// rows from the others until it ends.
//
// A row another claim updated meanwhile is checked again as it is now:
// one leased by a claim that committed is no longer available and is
// passed over.
//
// The claim decides on the rows' sizes (octet_length, read from the
// stored value's header) and reads the messages of the rows it takes
// only, so a claim bounded by maxBytes reads no more than that of a
// backlog of large messages.
func (s *Store) Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	for attempt := 1; ; attempt++ {
		recs, err := s.claim(ctx, owner, limit, maxBytes, lease)
		if err == nil || attempt == maxClaimAttempts || !retryable(err) {
			return recs, err
		}
	}
}

// maxClaimAttempts bounds the tries of a claim that lost a serialization
// conflict or a deadlock. Claims skip locked rows rather than wait for
// them, so neither is expected; a trigger or a rule of the user's on the
// table could cause them.
const maxClaimAttempts = 5

func (s *Store) claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	recs, err := s.claimIn(ctx, tx, owner, limit, maxBytes, lease, false)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim commit: %w", err)
	}
	decode(recs)
	return recs, nil
}

// claimIn locks the rows of a claim in tx, which runs in READ COMMITTED,
// and returns them in id order, not yet decoded. It leases them for lease,
// unless hold is set: the rows are then held by tx alone (ClaimHeld).
func (s *Store) claimIn(ctx context.Context, tx *sql.Tx, owner string, limit, maxBytes int, lease time.Duration, hold bool) ([]outbox.Record, error) {
	var (
		taken []outbox.Record
		bytes int
		seen  []int64 // order keys handled by an earlier pass
	)
	enough := func() bool { return maxBytes > 0 && bytes >= maxBytes }
	// Rows of a key held back by an earlier row stay at the head of the
	// scan; the next pass looks past the keys seen so far, so that a key
	// stuck behind a failing row does not stall the others.
	for pass := 0; pass < maxClaimPasses && len(taken) < limit && !enough(); pass++ {
		var mine []int64 // rows taken by an earlier pass: still available when held
		if hold {
			mine = recordIDs(taken)
		}
		cands, err := s.candidates(ctx, tx, limit-len(taken), seen, mine)
		if err != nil {
			return nil, err
		}
		if len(cands) == 0 {
			break
		}
		ok, keys, held, err := s.inOrder(ctx, tx, owner, cands)
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
			var recs []outbox.Record
			if hold {
				recs, err = s.bodies(ctx, tx, ok)
			} else {
				recs, err = s.lease(ctx, tx, owner, ok, lease)
			}
			if err != nil {
				return nil, err
			}
			taken = append(taken, recs...)
		}
		if !held {
			break // no key was held back: the scan is complete
		}
		seen = append(seen, keys...)
	}
	slices.SortFunc(taken, func(a, b outbox.Record) int { return cmp.Compare(a.ID, b.ID) })
	return taken, nil
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
}

// maxClaimPasses bounds the scans of one claim that look past held-back
// keys.
const maxClaimPasses = 4

const candidateColumns = `id, COALESCE(octet_length(message), 0), attempts, order_key`

// candidates locks up to limit available rows whose order key is not in
// skip and whose id is not in taken, first available first.
func (s *Store) candidates(ctx context.Context, tx *sql.Tx, limit int, skip, taken []int64) ([]candidate, error) {
	query := `SELECT ` + candidateColumns + ` FROM ` + s.t.q + ` WHERE available_at <= ` + now
	args := []any{limit}
	if len(skip) > 0 {
		args = append(args, idArray(skip))
		query += ` AND (order_key IS NULL OR order_key <> ALL($` + strconv.Itoa(len(args)) + `::bigint[]))`
	}
	if len(taken) > 0 {
		args = append(args, idArray(taken))
		query += ` AND id <> ALL($` + strconv.Itoa(len(args)) + `::bigint[])`
	}
	query += ` ORDER BY available_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`
	return scanCandidates(tx.QueryContext(ctx, query, args...))
}

func recordIDs(recs []outbox.Record) []int64 {
	ids := make([]int64, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

// scanCandidates reads rows of candidateColumns.
func scanCandidates(rows *sql.Rows, err error) ([]candidate, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	defer rows.Close()
	var cands []candidate
	for rows.Next() {
		var (
			c   candidate
			key sql.NullInt64
		)
		if err := rows.Scan(&c.id, &c.size, &c.attempts, &key); err != nil {
			return nil, fmt.Errorf("outbox/postgres: claim scan: %w", err)
		}
		c.key = key.Int64
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
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
func (s *Store) inOrder(ctx context.Context, tx *sql.Tx, owner string, cands []candidate) (ok []candidate, keys []int64, held bool, err error) {
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

	// Each key's first rows up to its highest candidate, in id order, as
	// many as it has candidates, passing over those owner leased already,
	// with whether each is available: one walk of the (order_key, id)
	// index per key.
	tops, counts := make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		tops[i], counts[i] = highest[k], int64(perKey[k])
	}
	rows, err := tx.QueryContext(ctx, `SELECT k.key, o.id, o.ready
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k(key, top, n)
		CROSS JOIN LATERAL (
			SELECT id, available_at <= `+now+` AS ready FROM `+s.t.q+`
			WHERE order_key = k.key AND id <= k.top
			  AND NOT (claimed_by IS NOT DISTINCT FROM $4::text AND available_at > `+now+`)
			ORDER BY id LIMIT k.n
		) AS o
		ORDER BY k.key, o.id`, idArray(keys), idArray(tops), idArray(counts), owner)
	if err != nil {
		return nil, nil, false, fmt.Errorf("outbox/postgres: claim order: %w", err)
	}
	heads := map[int64][]int64{}
	readyOf := map[int64]bool{}
	for rows.Next() {
		var (
			k, id int64
			ready bool
		)
		if err := rows.Scan(&k, &id, &ready); err != nil {
			rows.Close()
			return nil, nil, false, fmt.Errorf("outbox/postgres: claim order: %w", err)
		}
		heads[k] = append(heads[k], id)
		readyOf[id] = ready
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, false, fmt.Errorf("outbox/postgres: claim order: %w", err)
	}
	// The run of each key: its available rows from the lowest on.
	var wanted []int64
	for _, k := range keys {
		run := heads[k][:0]
		for _, id := range heads[k] {
			if !readyOf[id] {
				break
			}
			run = append(run, id)
			wanted = append(wanted, id)
		}
		heads[k] = run
	}
	if len(wanted) == 0 {
		return ok, keys, true, nil
	}

	// Lock them; one locked by another claim, or leased meanwhile, ends
	// its key's run.
	locked, err := scanCandidates(tx.QueryContext(ctx, `SELECT `+candidateColumns+` FROM `+s.t.q+
		` WHERE id = ANY($1::bigint[]) AND available_at <= `+now+` FOR UPDATE SKIP LOCKED`, idArray(wanted)))
	if err != nil {
		return nil, nil, false, err
	}
	byID := make(map[int64]candidate, len(locked))
	for _, c := range locked {
		byID[c.id] = c
	}
	for _, k := range keys {
		n := 0
		for _, id := range heads[k] {
			c, got := byID[id]
			if !got {
				break
			}
			ok = append(ok, c)
			n++
		}
		if n == 0 {
			held = true
		}
	}
	return ok, keys, held, nil
}

// lease hides the claimed rows from other claimers until lease has passed,
// and reads their messages.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, owner string, taken []candidate, lease time.Duration) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE `+s.t.q+` SET available_at = `+now+` + `+micros("$1")+`,
		claimed_by = $2, last_send_at = `+now+` WHERE id = ANY($3::bigint[]) RETURNING id, message`,
		lease.Microseconds(), owner, idArray(candidateIDs(taken)))
	return scanRecords(rows, err, taken)
}

// bodies reads the messages of the rows taken by a held claim, which holds
// them locked.
func (s *Store) bodies(ctx context.Context, tx *sql.Tx, taken []candidate) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, message FROM `+s.t.q+` WHERE id = ANY($1::bigint[])`,
		idArray(candidateIDs(taken)))
	return scanRecords(rows, err, taken)
}

func candidateIDs(cs []candidate) []int64 {
	ids := make([]int64, len(cs))
	for i, c := range cs {
		ids[i] = c.id
	}
	return ids
}

// scanRecords reads rows of (id, message) of the candidates taken into
// records.
func scanRecords(rows *sql.Rows, err error, taken []candidate) ([]outbox.Record, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	defer rows.Close()
	byID := make(map[int64]candidate, len(taken))
	for _, c := range taken {
		byID[c.id] = c
	}
	recs := make([]outbox.Record, 0, len(taken))
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.Body); err != nil {
			return nil, fmt.Errorf("outbox/postgres: claim read: %w", err)
		}
		c := byID[r.ID]
		r.OrderKey, r.Attempts = c.key, c.attempts
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim read: %w", err)
	}
	return recs, nil
}
