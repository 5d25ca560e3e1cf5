package streams

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream API error codes natter tells apart. nats.go names some of
// them (jetstream.JSErrCode*); these are the ones it does not.
const (
	// ErrCodeStoreFailed is nats-server's JSStreamStoreFailedF: a message
	// could not be stored, either because a discard-new stream reached
	// its byte limit ("maximum bytes exceeded") or because the write
	// failed (a full or failing disk).
	ErrCodeStoreFailed jetstream.ErrorCode = 10077
	// ErrCodeInsufficientResources is JSInsufficientResourcesErr: the
	// server has no room left for JetStream.
	ErrCodeInsufficientResources jetstream.ErrorCode = 10023
)

// Sentinel errors of the publish path; callers test them with errors.Is
// and translate them into the contract's codes.
var (
	// ErrStreamFull: a discard-new stream reached its byte limit.
	ErrStreamFull = errors.New("stream is full")
	// ErrStorage: JetStream cannot write (disk full or failing) or
	// disabled itself after such a failure.
	ErrStorage = errors.New("jetstream cannot store")
	// ErrTimeout: JetStream did not answer in time (it leaves a publish
	// it cannot write unanswered).
	ErrTimeout = errors.New("jetstream did not answer in time")
	// ErrUnavailable: any other failure to reach JetStream.
	ErrUnavailable = errors.New("jetstream unavailable")
)

// IsStreamFull reports JetStream refusing a message because the stream
// reached its byte limit (discard-new).
func IsStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == ErrCodeStoreFailed && strings.Contains(apiErr.Description, "maximum bytes")
}

// IsStorageFailure reports JetStream failing to write a message (a full
// or failing disk) or having disabled itself after such a failure.
func IsStorageFailure(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount, ErrCodeInsufficientResources:
		return true
	case ErrCodeStoreFailed:
		return !IsStreamFull(err)
	}
	return false
}

// IsWrongLastSeq reports a publish refused because its expected last
// subject sequence was stale: another writer got there first.
func IsWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
