package artifactd

import (
	"context"
	"errors"
	"math/rand/v2"
	"regexp"
	"strconv"
	"time"

	"connectrpc.com/connect"
)

// RetryPolicy says when and how the client tries a call again after a
// transient failure. Which failures are transient is the rule both other
// clients follow (clients/api/src/transient-failure.ts): UNAVAILABLE and
// ABORTED; RESOURCE_EXHAUSTED only with the service's retry-after-ms; a
// connection that failed under the call (reported as INTERNAL, UNKNOWN or
// CANCELED with a transport's text). Which calls are safe to repeat is the
// Node SDK's choice too (retried unary methods; downloads resumed from the
// last byte; uploads resumed from an upload session; Watch from its cursor).
//
// Waits grow exponentially with full jitter (a random wait between 0 and
// the current cap), so clients cut off together do not return together; a
// retry-after-ms hint is waited plus up to a quarter more, at random.
type RetryPolicy struct {
	// MaxAttempts counts every try, the first included; default 5. 1: no retries.
	MaxAttempts int
	// InitialDelay caps the first wait; default 100 ms. It doubles each retry.
	InitialDelay time.Duration
	// MaxDelay caps every wait; default 5 s.
	MaxDelay time.Duration
	// OnRetry, when set, is told about each retry before its wait.
	OnRetry func(attempt int, delay time.Duration, err error)
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 5
	}
	if p.InitialDelay <= 0 {
		p.InitialDelay = 100 * time.Millisecond
	}
	if p.MaxDelay < p.InitialDelay {
		p.MaxDelay = max(5*time.Second, p.InitialDelay)
	}
	return p
}

// transportFailure: texts of a connection that failed under a call, as Go's
// HTTP/2 transport and net package report them (the Node rule's list for
// Node and browsers, in Go's words).
var transportFailure = regexp.MustCompile(`(?i)RST_STREAM|stream error|connection reset|broken pipe|connection refused|client connection lost|connection closed|use of closed network connection|GOAWAY|unexpected EOF|\bEOF\b|http2:`)

// IsTransient reports whether a failed call is worth making again (see
// RetryPolicy). A context that has ended never is.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *connect.Error
	if !errors.As(err, &connectErr) {
		// Not a refusal of the service's: the connection (or the store's) failed.
		return transportFailure.MatchString(err.Error())
	}
	switch connectErr.Code() {
	case connect.CodeUnavailable, connect.CodeAborted:
		return true
	case connect.CodeResourceExhausted:
		_, ok := retryAfter(connectErr)
		return ok
	case connect.CodeCanceled, connect.CodeInternal, connect.CodeUnknown:
		return transportFailure.MatchString(connectErr.Message()) ||
			(connectErr.Unwrap() != nil && transportFailure.MatchString(connectErr.Unwrap().Error()))
	default:
		return false
	}
}

// retryAfter is the service's retry-after-ms (a header or trailer of a quota refusal).
func retryAfter(err *connect.Error) (time.Duration, bool) {
	raw := err.Meta().Get("retry-after-ms")
	if raw == "" {
		return 0, false
	}
	ms, parseErr := strconv.ParseFloat(raw, 64)
	if parseErr != nil || ms < 0 {
		return 0, false
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}

// wait sleeps before retry number attempt (1 = the first retry); it returns
// the context's error if the context ends first.
func (p RetryPolicy) wait(ctx context.Context, attempt int, err error) error {
	limit := p.InitialDelay << min(attempt-1, 30)
	if limit > p.MaxDelay || limit <= 0 {
		limit = p.MaxDelay
	}
	delay := time.Duration(rand.Int64N(int64(limit) + 1))
	var connectErr *connect.Error
	if errors.As(err, &connectErr) {
		if hint, ok := retryAfter(connectErr); ok {
			delay = hint + time.Duration(rand.Float64()*float64(hint)/4)
		}
	}
	if p.OnRetry != nil {
		p.OnRetry(attempt, delay, err)
	}
	return sleepCtx(ctx, delay)
}

// run calls call until it succeeds, fails for good, or the attempts run out.
func (p RetryPolicy) run(ctx context.Context, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil || attempt >= p.MaxAttempts || ctx.Err() != nil || !IsTransient(err) {
			return err
		}
		if waitErr := p.wait(ctx, attempt, err); waitErr != nil {
			return err
		}
	}
}
