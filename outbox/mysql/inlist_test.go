package mysql

import "testing"

func TestInList(t *testing.T) {
	in, args := inList([]int64{7, 8, 9})
	if in != "(?,?,?)" || len(args) != 3 || args[2] != int64(9) {
		t.Fatalf("inList = %q %v", in, args)
	}
}

// BenchmarkInList is the cost of building one batch statement of the
// acker's DELETE (500 ids, the default AckBatchSize).
func BenchmarkInList(b *testing.B) {
	ids := make([]int64, 500)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = inList(ids)
	}
}
