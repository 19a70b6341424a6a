package mysql

import "strconv"

// The statements that lock or write rows by their ids (a claim's locks, a
// lease, the acker's Delete, Fail and Release, a held claim's Commit) join
// the table to a table of those ids, read first, so that the server finds
// each row by its primary key and touches no other. By an id list
// (WHERE id IN (…)) the optimizer may scan the whole primary key of a
// short table, index hints or not, and in READ COMMITTED InnoDB locks each
// row it reads before it finds that the row is not in the list: a
// concurrent SKIP LOCKED then passes over rows no one meant to take (an
// acker's Delete would leave a confirmed row to the relay, to be sent
// again), and a DELETE waits for the rows another transaction holds (two
// held claims deleting their rows would deadlock). Through the available_at
// index, InnoDB would also lock the first row past the range it reads, and
// keep that lock until the transaction ends.

// byIDs is the table references of such a statement: the ids of the JSON
// array in the statement's first parameter (idJSON), each joined to its
// row of the table t (quoted) as o. Unqualified columns are o's. Both
// hints are needed: without STRAIGHT_JOIN the table may be read first, and
// without FORCE INDEX a short table is read whole into a join buffer (and
// every row of it locked) rather than each row looked up by its id.
func byIDs(t string) string {
	return `JSON_TABLE(?, '$[*]' COLUMNS (outbox_id BIGINT PATH '$')) AS ids STRAIGHT_JOIN ` + t +
		` AS o FORCE INDEX (PRIMARY) ON o.id = ids.outbox_id`
}

// idJSON is ids as a JSON array, the parameter of byIDs.
func idJSON(ids []int64) string {
	b := make([]byte, 0, 2+8*len(ids))
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}
