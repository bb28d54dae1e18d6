package artifactd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/zeebo/blake3"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

const (
	// directUnavailableFor is how long "this server offers no direct
	// downloads" or "its store is out of reach" is believed (as the Node SDK).
	directUnavailableFor = time.Minute
	// directConnectTimeout bounds the wait for the store's answer to a GET.
	directConnectTimeout = 10 * time.Second
	// directIdleTimeout: a store connection that brings no byte for this long
	// is taken as broken, and the download resumes with a new link.
	directIdleTimeout = 30 * time.Second
	// directUnavailableTrailer is the service's reason for refusing a direct link: "server" or "inline".
	directUnavailableTrailer = "direct-download-unavailable"
)

// OpenOption configures Open and DownloadToFile.
type OpenOption func(*openOptions)

type openOptions struct {
	offset     int64
	length     *int64
	direct     *DirectDownloadMode
	onProgress func(bytes, total int64)
}

// Range reads length bytes from offset (length < 0: to the end). A ranged
// read cannot be checked against the whole content's BLAKE3; its size is.
func Range(offset, length int64) OpenOption {
	return func(o *openOptions) {
		o.offset = offset
		if length >= 0 {
			o.length = &length
		}
	}
}

// Direct overrides the client's direct-download mode for one download.
func Direct(mode DirectDownloadMode) OpenOption { return func(o *openOptions) { o.direct = &mode } }

// Progress is called as content arrives with the bytes so far and the total this download reads.
func Progress(report func(bytes, total int64)) OpenOption {
	return func(o *openOptions) { o.onProgress = report }
}

// Reader is an artifact's content being downloaded (an io.ReadCloser). A
// whole-content download is hashed as the bytes pass: where io.EOF would
// come, Read answers an *IntegrityError instead if the size or BLAKE3 does
// not match, so never act on the bytes before Read has answered io.EOF. A
// connection that drops is resumed from the last byte received, the hash
// carried on. Close releases the stream; always call it.
type Reader struct {
	client    *Client
	ctx       context.Context
	cancel    context.CancelFunc
	requested string
	artifact  *Artifact
	offset    int64 // first byte of the range read
	total     int64 // bytes of the range
	received  int64
	hasher    *blake3.Hasher // nil for a ranged read
	retries   int

	relayed *connect.ServerStreamForClient[artifactsv1.DownloadResponse]
	direct  io.ReadCloser // the store's body, for a direct download
	viaLink bool
	pending []byte
	// serverSkippedCheck: the content came through the service, told this reader verifies it
	// (DownloadRequest.client_verifies), so the service did not hash it.
	serverSkippedCheck bool

	onProgress func(bytes, total int64)
	err        error
}

// Open starts a download of the artifact an id or reference names, and
// answers once the server has sent the artifact's record (Reader.Artifact).
// Where the server offers direct-to-storage downloads, the content comes
// from the store through a presigned link, verified the same way.
func (c *Client) Open(ctx context.Context, idOrRef string, options ...OpenOption) (*Reader, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	var o openOptions
	for _, option := range options {
		option(&o)
	}
	if o.offset < 0 {
		return nil, invalidArgument("Open: the offset must be >= 0, got %d", o.offset)
	}
	streamCtx, cancel := context.WithCancel(ctx)
	r := &Reader{client: c, ctx: streamCtx, cancel: cancel, requested: idOrRef, offset: o.offset, onProgress: o.onProgress}
	mode := c.direct
	if o.direct != nil {
		mode = *o.direct
	}
	opened, err := r.openDirect(mode, id, o.length)
	if err == nil && !opened {
		err = c.retry.run(streamCtx, func() error { return r.openRelayed(id, o.offset, o.length) })
	}
	if err != nil {
		cancel()
		return nil, wrapErr(ctx, err)
	}
	if o.offset == 0 && o.length == nil {
		r.hasher = blake3.New()
	}
	return r, nil
}

// Artifact is the record of the artifact being read.
func (r *Reader) Artifact() *Artifact { return r.artifact }

// Size is the number of bytes this download reads.
func (r *Reader) Size() int64 { return r.total }

// Read reads content; see Reader for how it reports corrupt content.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for len(r.pending) == 0 {
		chunk, err := r.next()
		if err == io.EOF {
			r.err = r.verify()
			return 0, r.err
		}
		if err != nil {
			r.err = wrapErr(r.ctx, err)
			r.cancel()
			return 0, r.err
		}
		if r.received+int64(len(chunk)) > r.total {
			r.err = &IntegrityError{ArtifactID: r.artifact.GetId(), Reason: fmt.Sprintf("received more than the %d bytes expected", r.total)}
			return 0, r.err
		}
		if r.hasher != nil {
			r.hasher.Write(chunk)
		}
		r.received += int64(len(chunk))
		if r.onProgress != nil {
			r.onProgress(r.received, r.total)
		}
		r.pending = chunk
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// Close ends the download (the stream, or the store's connection).
func (r *Reader) Close() error {
	r.cancel()
	if r.relayed != nil {
		_ = r.relayed.Close()
	}
	if r.direct != nil {
		_ = r.direct.Close()
	}
	if r.err == nil {
		r.err = errors.New("artifactd: read from a closed Reader")
	}
	return nil
}

func (r *Reader) verify() error {
	if r.received != r.total {
		return &IntegrityError{ArtifactID: r.artifact.GetId(), Reason: fmt.Sprintf("received %d bytes, expected %d", r.received, r.total)}
	}
	if r.hasher != nil {
		if got := hex.EncodeToString(r.hasher.Sum(nil)); got != r.artifact.GetBlake3() {
			if r.serverSkippedCheck {
				r.letTheServerFindIt()
			}
			return &IntegrityError{ArtifactID: r.artifact.GetId(), Reason: fmt.Sprintf("content BLAKE3 is %s, the artifact's is %s", got, r.artifact.GetBlake3())}
		}
	}
	return io.EOF
}

// next answers the next piece of content, resuming after transient failures; io.EOF at the end of the range.
func (r *Reader) next() ([]byte, error) {
	for {
		if r.received == r.total && (r.relayed == nil || r.viaLink) {
			return nil, io.EOF
		}
		chunk, err := r.receive()
		if err == nil || err == io.EOF {
			if err == io.EOF && r.received < r.total {
				err = connect.NewError(connect.CodeUnavailable, fmt.Errorf("the content of %s ended after %d of %d bytes", r.artifact.GetId(), r.received, r.total))
			} else {
				return chunk, err
			}
		}
		var integrity *IntegrityError
		if errors.As(err, &integrity) || r.ctx.Err() != nil {
			return nil, err
		}
		r.retries++
		if r.retries >= r.client.retry.MaxAttempts || !IsTransient(err) {
			return nil, err
		}
		if waitErr := r.client.retry.wait(r.ctx, r.retries, err); waitErr != nil {
			return nil, err
		}
		if resumeErr := r.resume(); resumeErr != nil {
			if errors.As(resumeErr, &integrity) || !IsTransient(resumeErr) {
				return nil, resumeErr
			}
			err = resumeErr
		}
	}
}

func (r *Reader) receive() ([]byte, error) {
	if r.viaLink {
		if r.direct == nil {
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("no connection to the store"))
		}
		buf := make([]byte, 256*kiB)
		n, err := io.ReadFull(r.direct, buf)
		if n > 0 {
			return buf[:n], nil
		}
		_ = r.direct.Close()
		r.direct = nil
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, io.EOF
		}
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("reading from the blob store: %w", err))
	}
	for r.relayed.Receive() {
		if chunk := r.relayed.Msg().GetChunk(); chunk != nil {
			return chunk, nil
		}
	}
	if err := r.relayed.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

// resume continues after a dropped connection: a new stream (or a new link) for what is left, of the same content.
func (r *Reader) resume() error {
	id, at, left := r.artifact.GetId(), r.offset+r.received, r.total-r.received
	before := r.artifact
	if r.viaLink {
		if r.direct != nil {
			_ = r.direct.Close()
			r.direct = nil
		}
		link, err := r.askLink(true, id, at, &left)
		if err != nil {
			return err
		}
		if link == nil {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("artifact %s can no longer be downloaded directly from the store", id))
		}
		if err := sameContent(before, link.GetArtifact()); err != nil {
			return err
		}
		body, err := r.get(link)
		if err != nil {
			return connect.NewError(connect.CodeUnavailable, err)
		}
		r.direct = body
		return nil
	}
	_ = r.relayed.Close()
	// By the id it resolved to: a reference such as orders:latest may name another version by now.
	if err := r.openRelayed(id, at, &left); err != nil {
		return err
	}
	r.total = r.received + left
	return sameContent(before, r.artifact)
}

func sameContent(before, now *Artifact) error {
	if before.GetBlake3() != now.GetBlake3() || before.GetSizeBytes() != now.GetSizeBytes() {
		return &IntegrityError{ArtifactID: before.GetId(), Reason: "it changed while it was being downloaded; download it again"}
	}
	return nil
}

// letTheServerFindIt reads the content once more without client_verifies, discarding it, so the
// service checks it too and marks the blob corrupt: later reads then fail at once, for every client.
// Best effort, as the Node SDK does it: the caller gets its IntegrityError either way.
func (r *Reader) letTheServerFindIt() {
	stream, err := r.client.rpc.Download(r.ctx, connect.NewRequest(&artifactsv1.DownloadRequest{Id: r.artifact.GetId()}))
	if err != nil {
		return
	}
	for stream.Receive() {
	}
	_ = stream.Close()
}

// openRelayed opens a Download call and reads its first message, the artifact. A whole read is
// verified by this reader, so the service is told it need not hash it (client_verifies).
func (r *Reader) openRelayed(id string, offset int64, length *int64) error {
	whole := offset == 0 && length == nil
	stream, err := r.client.rpc.Download(r.ctx, connect.NewRequest(&artifactsv1.DownloadRequest{Id: id, Offset: offset, Length: length, ClientVerifies: whole}))
	if err != nil {
		return err
	}
	if whole {
		r.serverSkippedCheck = true
	}
	if !stream.Receive() {
		_ = stream.Close()
		if err := stream.Err(); err != nil {
			return err
		}
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("download of %s: the stream ended before the artifact header", id))
	}
	artifact := stream.Msg().GetArtifact()
	if artifact == nil {
		_ = stream.Close()
		return connect.NewError(connect.CodeInternal, fmt.Errorf("download of %s: the server sent no artifact header", id))
	}
	r.relayed = stream
	if r.artifact == nil {
		r.artifact = artifact
		remaining := max(0, artifact.GetSizeBytes()-offset)
		r.total = remaining
		if length != nil {
			r.total = min(remaining, *length)
		}
	} else {
		r.artifact = artifact
	}
	return nil
}

// openDirect opens a direct-to-storage download when the mode and the server allow it: false means use the service.
func (r *Reader) openDirect(mode DirectDownloadMode, id string, length *int64) (bool, error) {
	c := r.client
	always := mode == DirectAlways
	if mode == DirectNever || (!always && c.directIsUnavailable()) {
		return false, nil
	}
	link, err := r.askLink(always, id, r.offset, length)
	if err != nil || link == nil {
		return false, err
	}
	r.artifact, r.total, r.viaLink = link.GetArtifact(), link.GetLength(), true
	if r.total == 0 {
		return true, nil
	}
	body, err := r.get(link)
	if err != nil {
		if r.ctx.Err() != nil {
			return false, r.ctx.Err()
		}
		if always {
			return false, connect.NewError(connect.CodeUnavailable, err)
		}
		// The store is out of this client's reach (or refuses it): the service can still relay the content.
		var unreachable *storeUnreachable
		if errors.As(err, &unreachable) {
			c.markDirectUnavailable()
		}
		r.artifact, r.total, r.viaLink = nil, 0, false
		return false, nil
	}
	r.direct = body
	return true, nil
}

// askLink asks for a direct link; nil (no error) when this download should go through the service instead.
func (r *Reader) askLink(always bool, id string, offset int64, length *int64) (*artifactsv1.CreateDownloadUrlResponse, error) {
	c := r.client
	response, err := c.rpc.CreateDownloadUrl(r.ctx, connect.NewRequest(&artifactsv1.CreateDownloadUrlRequest{
		Id: id, DirectToStorage: true, Offset: offset, Length: length,
	}))
	if err != nil {
		if always {
			return nil, err
		}
		switch connect.CodeOf(err) {
		case connect.CodeUnimplemented:
			c.markDirectUnavailable()
			return nil, nil
		case connect.CodeFailedPrecondition:
			var connectErr *connect.Error
			errors.As(err, &connectErr)
			switch connectErr.Meta().Get(directUnavailableTrailer) {
			case "inline":
				return nil, nil
			case "server":
				c.markDirectUnavailable()
				return nil, nil
			}
		}
		return nil, err
	}
	if !response.Msg.GetDirectToStorage() || response.Msg.GetArtifact() == nil {
		// A server from before direct links answers a link to itself, whatever was asked.
		if always {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the server does not offer direct-to-storage downloads"))
		}
		c.markDirectUnavailable()
		return nil, nil
	}
	return response.Msg, nil
}

type storeUnreachable struct{ err error }

func (e *storeUnreachable) Error() string { return "the blob store is out of reach: " + e.err.Error() }
func (e *storeUnreachable) Unwrap() error { return e.err }

// get fetches a link's range from the store, its status checked.
func (r *Reader) get(link *artifactsv1.CreateDownloadUrlResponse) (io.ReadCloser, error) {
	request, err := http.NewRequestWithContext(r.ctx, http.MethodGet, link.GetUrl(), nil)
	if err != nil {
		return nil, err
	}
	for name, value := range link.GetHeaders() {
		request.Header.Set(name, value)
	}
	response, err := r.client.directHTTP.Do(request)
	if err != nil {
		return nil, &storeUnreachable{err}
	}
	whole := link.GetOffset() == 0 && link.GetLength() == link.GetArtifact().GetSizeBytes()
	if response.StatusCode == http.StatusPartialContent || (response.StatusCode == http.StatusOK && whole) {
		return newIdleBody(response.Body), nil
	}
	_ = response.Body.Close()
	return nil, fmt.Errorf("the blob store refused the direct link to %s (HTTP %d)", link.GetArtifact().GetId(), response.StatusCode)
}

func (c *Client) directIsUnavailable() bool {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	return time.Now().Before(c.shared.directUnavailable)
}

func (c *Client) markDirectUnavailable() {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	c.shared.directUnavailable = time.Now().Add(directUnavailableFor)
}

// idleBody closes a store's body that brings nothing for directIdleTimeout,
// so a stalled connection fails (and is resumed) instead of hanging.
type idleBody struct {
	body  io.ReadCloser
	timer *time.Timer
}

func newIdleBody(body io.ReadCloser) *idleBody {
	return &idleBody{body: body, timer: time.AfterFunc(directIdleTimeout, func() { _ = body.Close() })}
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.timer.Reset(directIdleTimeout)
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.body.Close()
}
