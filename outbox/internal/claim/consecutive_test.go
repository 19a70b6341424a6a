package claim

import "testing"

func TestConsecutive(t *testing.T) {
	for _, c := range []struct {
		ids   []int64
		first int64
		ok    bool
	}{
		{nil, 0, false},
		{[]int64{7}, 7, true},
		{[]int64{3, 4, 5}, 3, true},
		{[]int64{5, 3, 4}, 3, true},
		{[]int64{3, 5}, 0, false},
		{[]int64{3, 3, 5}, 0, false}, // as many ids as 3..5, one of them twice
		{[]int64{4, 4}, 0, false},
		{[]int64{1, 2, 4, 5}, 0, false},
		{[]int64{-1, 0, 1}, -1, true},
	} {
		first, ok := Consecutive(c.ids)
		if ok != c.ok || (ok && first != c.first) {
			t.Errorf("Consecutive(%v) = %d, %v; want %d, %v", c.ids, first, ok, c.first, c.ok)
		}
	}
}
