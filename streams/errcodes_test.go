package streams

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream's refusals are told apart by their API error codes: a full
// stream (discard new), a failing store, or a wrong expected sequence.
func TestPublishErrorsAreClassified(t *testing.T) {
	api := func(code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: desc})
	}
	cases := []struct {
		name                   string
		err                    error
		full, storage, wrongSq bool
	}{
		{"stream full", api(ErrCodeStoreFailed, "maximum bytes exceeded"), true, false, false},
		{"write failed", api(ErrCodeStoreFailed, "error storing message: write ... file too large"), false, true, false},
		{"jetstream disabled", api(jetstream.JSErrCodeJetStreamNotEnabled, "jetstream not enabled"), false, true, false},
		{"insufficient resources", api(ErrCodeInsufficientResources, "insufficient resources"), false, true, false},
		{"wrong last sequence", api(jetstream.JSErrCodeStreamWrongLastSequence, "wrong last sequence: 4"), false, false, true},
		{"not an API error", fmt.Errorf("nats: timeout"), false, false, false},
	}
	for _, tc := range cases {
		if got := IsStreamFull(tc.err); got != tc.full {
			t.Errorf("%s: isStreamFull = %v", tc.name, got)
		}
		if got := IsStorageFailure(tc.err); got != tc.storage {
			t.Errorf("%s: isStorageFailure = %v", tc.name, got)
		}
		if got := IsWrongLastSeq(tc.err); got != tc.wrongSq {
			t.Errorf("%s: isWrongLastSeq = %v", tc.name, got)
		}
	}
}
