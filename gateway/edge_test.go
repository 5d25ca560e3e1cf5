package gateway

import (
	"strconv"
	"testing"
)

func TestLimiterRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{
		{-5, "1"}, {0, "1"}, {1, "1"}, {999, "1"}, {1000, "1"}, {1001, "2"}, {1500, "2"},
		{2000, "2"}, {2001, "3"}, {59001, "60"}, {3600000, "3600"},
	} {
		if got := retryAfterSeconds(tc.ms); got != tc.want {
			t.Errorf("retryAfterSeconds(%d) = %s, want %s", tc.ms, got, tc.want)
		}
	}
	// Never rounds down: the Retry-After header never invites an early retry.
	for ms := int64(1); ms < 10000; ms += 7 {
		s, _ := strconv.ParseInt(retryAfterSeconds(ms), 10, 64)
		if s*1000 < ms || (s-1)*1000 >= ms {
			t.Fatalf("retryAfterSeconds(%d) = %d", ms, s)
		}
	}
}
