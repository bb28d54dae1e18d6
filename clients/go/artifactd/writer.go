package artifactd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"

	"connectrpc.com/connect"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

// The contract's shapes, under the names this package uses.
type (
	// Spec describes an artifact to save: kind, class, name, labels, tags,
	// metrics, provenance, lineage inputs, pin, status, expiry, type prefix,
	// versioning.
	Spec = artifactsv1.ArtifactSpec
	// Artifact is an artifact's record: metadata, size, BLAKE3, versions.
	Artifact = artifactsv1.Artifact
	// Filter narrows List, Search, Best and Watch.
	Filter = artifactsv1.ArtifactFilter
	// Provenance says which run, graph, node, tool, user or app made an artifact.
	Provenance = artifactsv1.Provenance
	// Input is a lineage edge: an artifact this one was made from.
	Input = artifactsv1.ArtifactInput
	// UploadResponse is a committed upload's artifact, and whether its content was already stored.
	UploadResponse = artifactsv1.UploadResponse
)

// WriterOption configures OpenWriter.
type WriterOption func(*writerOptions)

type writerOptions struct {
	expectedSize   *int64
	expectedBlake3 string
	session        *sessionBinding
	onProgress     func(bytes int64)
	resumable      bool
}

type sessionBinding struct {
	id     string
	offset int64
}

// ExpectedSize declares the content's size: the server refuses another
// count (INVALID_ARGUMENT) and records nothing.
func ExpectedSize(n int64) WriterOption { return func(o *writerOptions) { o.expectedSize = &n } }

// ExpectedBlake3 declares the content's BLAKE3 (lowercase hex): the server
// refuses other content (INVALID_ARGUMENT) and records nothing.
func ExpectedBlake3(hex string) WriterOption {
	return func(o *writerOptions) { o.expectedBlake3 = hex }
}

// OnProgress is called with the content bytes the connection has taken so far.
func OnProgress(report func(bytes int64)) WriterOption {
	return func(o *writerOptions) { o.onProgress = report }
}

// Writer is a streaming save (an io.WriteCloser). Write appends content,
// AddLabels / AddTags / AddMetrics gather metadata sent with the commit,
// Commit ends the upload and answers the artifact once the server has
// verified and recorded it. Close without Commit aborts: the server records
// nothing. A Writer is for one goroutine at a time.
//
// Write blocks until the connection has taken the bytes (HTTP/2 flow
// control), so a slow server slows the producer instead of the writer
// buffering the content: io.Copy(w, r) streams any size in bounded memory.
// The first 64 KiB are held and, if the content ends there, sent at Commit
// as one call (small artifacts cost one round trip; a refusal then comes
// from Commit).
type Writer struct {
	client  *Client
	ctx     context.Context
	cancel  context.CancelFunc
	spec    *Spec
	options writerOptions

	stream       *connect.ClientStreamForClient[artifactsv1.UploadRequest, artifactsv1.UploadResponse]
	held         []byte // content not sent yet: what is held before the stream opens, then one message's worth
	written      int64
	progressSent int64

	mu      sync.Mutex
	labels  map[string]string
	metrics map[string]float64
	tags    []string

	state  writerState
	result *UploadResponse
	err    error

	resumable *resumableWriter // set when opened with Resumable
}

type writerState int

const (
	writerOpen writerState = iota
	writerCommitted
	writerFailed
	writerAborted
)

// OpenWriter starts a streaming save of an artifact described by spec. The
// context covers the whole upload: cancelling it aborts the upload, and its
// deadline reaches the server, which records nothing past it.
func (c *Client) OpenWriter(ctx context.Context, spec *Spec, options ...WriterOption) (*Writer, error) {
	if spec == nil {
		return nil, invalidArgument("OpenWriter: spec is required")
	}
	return c.openWriter(ctx, c.scopedSpec(spec), options...)
}

// openWriter is OpenWriter with the spec as given (already scoped, or a session's stand-in).
func (c *Client) openWriter(ctx context.Context, spec *Spec, options ...WriterOption) (*Writer, error) {
	w := &Writer{client: c, spec: spec, labels: map[string]string{}, metrics: map[string]float64{}}
	for _, option := range options {
		option(&w.options)
	}
	if w.options.expectedSize != nil && *w.options.expectedSize < 0 {
		return nil, invalidArgument("OpenWriter: ExpectedSize must be >= 0, got %d", *w.options.expectedSize)
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	if w.options.resumable && w.options.session == nil {
		if err := c.openResumableWriter(w); err != nil {
			w.fail(err)
			return nil, w.err
		}
		return w, nil
	}
	// A declared content too large to hold is streamed from its first byte.
	if w.options.session != nil || (w.options.expectedSize != nil && *w.options.expectedSize > heldUploadBytes) {
		if err := w.open(); err != nil {
			w.fail(err)
			return nil, w.err
		}
	}
	return w, nil
}

// Write appends p to the content; it returns once the connection has taken
// the bytes (or, for the first 64 KiB, once they are held), so p may be
// reused afterwards.
func (w *Writer) Write(p []byte) (int, error) {
	if w.state != writerOpen {
		return 0, w.closedErr("write")
	}
	if w.resumable != nil {
		return w.writeResumably(p)
	}
	if w.stream == nil && len(w.held)+len(p) <= heldUploadBytes {
		w.held = append(w.held, p...)
		w.written += int64(len(p))
		return len(p), nil
	}
	if w.stream == nil {
		if err := w.open(); err != nil {
			w.fail(err)
			return 0, w.err
		}
	}
	n := len(p)
	for len(p) > 0 {
		// Whole messages straight from p when nothing is staged; the rest staged into one message.
		if len(w.held) == 0 && len(p) >= messageBytes {
			if err := w.sendChunk(p[:messageBytes]); err != nil {
				return n - len(p), err
			}
			p = p[messageBytes:]
			continue
		}
		taken := min(messageBytes-len(w.held), len(p))
		w.held = append(w.held, p[:taken]...)
		p = p[taken:]
		if len(w.held) == messageBytes {
			if err := w.sendChunk(w.held); err != nil {
				return n - len(p), err
			}
			w.held = w.held[:0]
		}
	}
	w.written += int64(n)
	return n, nil
}

// ReadFrom writes everything r yields, read a message (256 KiB) at a time
// straight into the message sent, so io.Copy(w, r) copies each byte once.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	buffer := make([]byte, messageBytes)
	var total int64
	for {
		n, err := io.ReadFull(r, buffer)
		if n > 0 {
			if _, writeErr := w.Write(buffer[:n]); writeErr != nil {
				return total, writeErr
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// AddLabels adds labels sent with the commit; later values win, and win over the spec's.
func (w *Writer) AddLabels(labels map[string]string) *Writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.Copy(w.labels, labels)
	return w
}

// AddMetrics adds metrics sent with the commit; later values win, and win over the spec's.
func (w *Writer) AddMetrics(metrics map[string]float64) *Writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.Copy(w.metrics, metrics)
	return w
}

// AddTags adds tags sent with the commit, to the spec's.
func (w *Writer) AddTags(tags ...string) *Writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tags = append(w.tags, tags...)
	return w
}

// Written is the number of content bytes written so far.
func (w *Writer) Written() int64 { return w.written }

// Commit sends the gathered metadata, ends the upload and answers the
// artifact once the server has verified and recorded it. Calling it again
// answers the same result.
func (w *Writer) Commit() (*UploadResponse, error) {
	switch w.state {
	case writerCommitted:
		return w.result, nil
	case writerOpen:
	default:
		return nil, w.closedErr("commit")
	}
	if w.resumable != nil {
		return w.commitResumably()
	}
	if w.stream == nil {
		if err := w.open(); err != nil {
			w.fail(err)
			return nil, w.err
		}
	}
	if len(w.held) > 0 {
		if err := w.sendChunk(w.held); err != nil {
			return nil, err
		}
		w.held = nil
	}
	w.mu.Lock()
	trailer := &artifactsv1.UploadTrailer{Labels: maps.Clone(w.labels), Metrics: maps.Clone(w.metrics), Tags: append([]string(nil), w.tags...)}
	w.mu.Unlock()
	if len(trailer.Labels)+len(trailer.Metrics)+len(trailer.Tags) > 0 {
		if err := w.send(&artifactsv1.UploadRequest{Message: &artifactsv1.UploadRequest_Trailer{Trailer: trailer}}); err != nil {
			return nil, err
		}
	}
	response, err := w.stream.CloseAndReceive()
	if err != nil {
		w.fail(err)
		return nil, w.err
	}
	w.state, w.result = writerCommitted, response.Msg
	w.cancel()
	return w.result, nil
}

// Close aborts the upload unless it was committed: the server records
// nothing. It is safe to call more than once, and after Commit.
func (w *Writer) Close() error {
	if w.state == writerOpen {
		if w.resumable != nil {
			w.closeResumable()
		} else {
			w.abort()
		}
		w.state = writerAborted
	}
	return nil
}

// Abort cancels the upload (Close does the same); the server records nothing.
func (w *Writer) Abort() { _ = w.Close() }

func (w *Writer) abort() {
	// Cancelling resets the HTTP/2 stream: the server sees a cancel, never a clean end of the content.
	w.cancel()
	if w.stream != nil {
		_, _ = w.stream.CloseAndReceive()
	}
}

func (w *Writer) open() error {
	w.stream = w.client.rpc.Upload(w.ctx)
	header := &artifactsv1.UploadHeader{}
	if binding := w.options.session; binding != nil {
		header.SessionId, header.Offset = binding.id, binding.offset
	} else {
		header.Spec = w.spec
		header.ExpectedSize = w.options.expectedSize
		header.ExpectedBlake3 = w.options.expectedBlake3
	}
	return w.send(&artifactsv1.UploadRequest{Message: &artifactsv1.UploadRequest_Header{Header: header}})
}

func (w *Writer) sendChunk(chunk []byte) error {
	if err := w.send(&artifactsv1.UploadRequest{Message: &artifactsv1.UploadRequest_Chunk{Chunk: chunk}}); err != nil {
		return err
	}
	if w.options.onProgress != nil {
		w.options.onProgress(w.sentBytes(len(chunk)))
	}
	return nil
}

// sentBytes tracks what the connection took, for progress reports.
func (w *Writer) sentBytes(n int) int64 {
	w.progressSent += int64(n)
	return w.progressSent
}

func (w *Writer) send(message *artifactsv1.UploadRequest) error {
	err := w.stream.Send(message)
	if err == nil {
		return nil
	}
	// io.EOF: the server ended the call; its answer (the reason) comes from CloseAndReceive.
	if errors.Is(err, io.EOF) {
		_, err = w.stream.CloseAndReceive()
		if err == nil {
			err = connect.NewError(connect.CodeInternal, errors.New("the server ended the upload before its content was complete"))
		}
	}
	w.fail(err)
	return w.err
}

func (w *Writer) fail(err error) {
	if w.state == writerOpen {
		w.state = writerFailed
		w.err = wrapErr(w.ctx, err)
		w.cancel()
	}
}

func (w *Writer) closedErr(action string) error {
	if w.err != nil {
		return w.err
	}
	names := map[writerState]string{writerCommitted: "committed", writerAborted: "closed", writerFailed: "failed"}
	return fmt.Errorf("artifactd: cannot %s: the writer is %s", action, names[w.state])
}
