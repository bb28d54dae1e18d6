package artifactd

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
)

// Error is a failed call: the server's refusal (its gRPC code and message),
// or a cancel, deadline or lost connection, as a connect.Error. It unwraps
// to that *connect.Error, so connect.CodeOf(err) and errors.As work, and
// errors.Is(err, ErrNotFound) (or any Err… below) tests its code.
type Error struct {
	cause *connect.Error
}

func (e *Error) Error() string { return e.cause.Error() }

// Unwrap answers the *connect.Error.
func (e *Error) Unwrap() error { return e.cause }

// Code is the gRPC code.
func (e *Error) Code() connect.Code { return e.cause.Code() }

// Message is the server's message without the code.
func (e *Error) Message() string { return e.cause.Message() }

// Is matches the code sentinels (ErrNotFound, …).
func (e *Error) Is(target error) bool {
	var sentinel codeSentinel
	return errors.As(target, &sentinel) && sentinel.code == e.cause.Code()
}

type codeSentinel struct{ code connect.Code }

func (s codeSentinel) Error() string { return "artifactd: " + s.code.String() }

// Sentinels for errors.Is, one per gRPC code the service answers.
var (
	ErrInvalidArgument    error = codeSentinel{connect.CodeInvalidArgument}
	ErrNotFound           error = codeSentinel{connect.CodeNotFound}
	ErrAlreadyExists      error = codeSentinel{connect.CodeAlreadyExists}
	ErrFailedPrecondition error = codeSentinel{connect.CodeFailedPrecondition}
	ErrOutOfRange         error = codeSentinel{connect.CodeOutOfRange}
	ErrResourceExhausted  error = codeSentinel{connect.CodeResourceExhausted}
	ErrAborted            error = codeSentinel{connect.CodeAborted}
	ErrDataLoss           error = codeSentinel{connect.CodeDataLoss}
	ErrUnauthenticated    error = codeSentinel{connect.CodeUnauthenticated}
	ErrPermissionDenied   error = codeSentinel{connect.CodePermissionDenied}
	ErrUnavailable        error = codeSentinel{connect.CodeUnavailable}
	ErrCanceled           error = codeSentinel{connect.CodeCanceled}
	ErrDeadlineExceeded   error = codeSentinel{connect.CodeDeadlineExceeded}
	ErrUnimplemented      error = codeSentinel{connect.CodeUnimplemented}
	ErrInternal           error = codeSentinel{connect.CodeInternal}
)

// ErrIntegrity is matched (errors.Is) by an IntegrityError.
var ErrIntegrity = errors.New("artifactd: content does not match its size or BLAKE3")

// IntegrityError is downloaded content that does not match the artifact's
// size or BLAKE3 (or an artifact that changed during a resumed download).
// Its code is DATA_LOSS; errors.Is(err, ErrIntegrity) matches it.
type IntegrityError struct {
	ArtifactID string
	Reason     string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("artifactd: artifact %s: %s", e.ArtifactID, e.Reason)
}

// Is matches ErrIntegrity and ErrDataLoss.
func (e *IntegrityError) Is(target error) bool {
	return target == ErrIntegrity || target == ErrDataLoss
}

// Unwrap answers a DATA_LOSS connect.Error, so connect.CodeOf says DataLoss.
func (e *IntegrityError) Unwrap() error {
	return connect.NewError(connect.CodeDataLoss, errors.New(e.Error()))
}

// wrapErr turns what a call failed with into an *Error (keeping the
// client's own errors, e.g. IntegrityError and ManifestError, as they are).
// A context that ended answers CANCELED or DEADLINE_EXCEEDED.
func wrapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	var integrity *IntegrityError
	var manifest *ManifestError
	if errors.As(err, &already) || errors.As(err, &integrity) || errors.As(err, &manifest) {
		return err
	}
	var connectErr *connect.Error
	isConnect := errors.As(err, &connectErr)
	// A transport's failure under a context that has ended is that ending: the caller's cancel or deadline.
	if ctx != nil && ctx.Err() != nil && (!isConnect || transportCode(connectErr.Code())) {
		return &Error{cause: connect.NewError(contextCode(ctx.Err()), err)}
	}
	if isConnect {
		return &Error{cause: connectErr}
	}
	if ctx != nil && ctx.Err() != nil {
		return &Error{cause: connect.NewError(contextCode(ctx.Err()), err)}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &Error{cause: connect.NewError(contextCode(err), err)}
	}
	return err
}

// invalidArgument is the client's own refusal of bad input, before any call,
// with the code the server would answer.
func invalidArgument(format string, args ...any) error {
	return &Error{cause: connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))}
}

func connectNotFound(message string) *connect.Error {
	return connect.NewError(connect.CodeNotFound, errors.New(message))
}

// transportCode: codes a failed connection or an ended context is reported with, rather than a server's answer.
func transportCode(code connect.Code) bool {
	switch code {
	case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeInternal, connect.CodeCanceled:
		return true
	}
	return false
}

// contextCode is the gRPC code of a context's ending.
func contextCode(err error) connect.Code {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.CodeDeadlineExceeded
	}
	return connect.CodeCanceled
}
