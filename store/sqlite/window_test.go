package sqlite

import (
	"testing"
)

// FuzzDecodeBuckets: a window row read back from disk never panics the decoder,
// and whatever decodes re-encodes to the same bytes.
func FuzzDecodeBuckets(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeBuckets([]bucket{{1767225600000, 3}, {1767225601000, 1}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		bs, err := decodeBuckets(b)
		if err != nil {
			return
		}
		if got := encodeBuckets(bs); string(got) != string(b) {
			// Varints have non-canonical forms; those must still decode the same.
			again, err := decodeBuckets(got)
			if err != nil || len(again) != len(bs) {
				t.Fatalf("re-encoding changed the buckets: %v -> %v", bs, again)
			}
		}
	})
}

func TestAddEvents(t *testing.T) {
	const w = 60_000 // 1 min: 1 s buckets
	tests := []struct {
		name      string
		in        []bucket
		now, n    int64
		want      int64
		wantCount int
	}{
		{"empty read", nil, 1000, 0, 0, 0},
		{"first event", nil, 1000, 1, 1, 1},
		{"same slot merges", []bucket{{1000, 2}}, 1999, 1, 3, 1},
		{"next slot appends", []bucket{{1000, 2}}, 2000, 1, 3, 2},
		{"boundary excluded", []bucket{{1000, 2}, {30000, 1}}, 61000, 0, 1, 1},
		{"all expired", []bucket{{1000, 2}}, 100000, 5, 5, 1},
		{"future events counted", []bucket{{90000, 4}}, 60000, 0, 4, 1},
		{"negative n", []bucket{{1000, 2}}, 1500, -1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, total := addEvents(append([]bucket(nil), tt.in...), tt.now, w, tt.n)
			if total != tt.want || len(got) != tt.wantCount {
				t.Fatalf("addEvents = %v, %d; want %d buckets, total %d", got, total, tt.wantCount, tt.want)
			}
		})
	}
	// However many events arrive, a window holds at most ~61 buckets.
	var bs []bucket
	for ms := int64(0); ms < 10*w; ms += 7 {
		bs, _ = addEvents(bs, ms, w, 1)
		if len(bs) > 61 {
			t.Fatalf("%d buckets at %d ms", len(bs), ms)
		}
	}
}
