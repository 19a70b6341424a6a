package claim

import "slices"

// Consecutive reports whether ids, in any order, are distinct and are each
// id from the smallest of them, first, to first+len(ids)-1. A store deletes
// such ids, all locked by its transaction, by a range of the primary key:
// no other row can be in it, and the server finds the rows in one descent
// of the index instead of one each.
func Consecutive(ids []int64) (first int64, ok bool) {
	if len(ids) == 0 {
		return 0, false
	}
	first = slices.Min(ids)
	seen := make([]bool, len(ids))
	for _, id := range ids {
		i := id - first
		if i >= int64(len(ids)) || seen[i] {
			return 0, false
		}
		seen[i] = true
	}
	return first, true
}
