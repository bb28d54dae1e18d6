package artifactd

import (
	"context"
	"fmt"
	"maps"
	"time"

	"connectrpc.com/connect"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

// maxUnstoredBytes bounds what a resumable writer holds: the part the
// server is storing and the one being sent. Past it, Write waits for the
// server to store a part.
const maxUnstoredBytes = 2 * defaultPartSize

// Resumable makes OpenWriter's upload survive a dropped connection for a
// source that cannot be read again (standard input, a pipe, a generator),
// as the Node SDK's `resumable: true` writer: the stream is bound to an
// upload session whose 8 MiB parts the server stores as they arrive, and
// the writer keeps the bytes the server has not stored yet. After a
// transient failure it asks the session where to continue (its
// resume_offset, a part boundary), opens a new stream there and sends the
// kept bytes again: the caller sees a slower Write, not an error. It asks
// the server how far it has stored at every part boundary and forgets what
// is stored, so it never holds more than two parts (16 MiB: the part being
// stored and the one being sent); Write waits for the server past that.
// Files need none of this: UploadFile reads them again instead.
func Resumable() WriterOption { return func(o *writerOptions) { o.resumable = true } }

// resumableWriter is a Writer's state when opened with Resumable.
type resumableWriter struct {
	client    *Client
	ctx       context.Context
	sessionID string
	inner     *Writer // the stream bound to the session, from some part boundary

	kept      [][]byte // the bytes from keptFrom on, in order: what a resumed stream sends again
	buffers   [][]byte // each kept piece's whole buffer, to be used again once the server has stored it
	free      [][]byte // buffers of messageBytes whose bytes the server has stored
	keptFrom  int64
	checkedAt int64 // written when the server was last asked how far it has stored
}

func (c *Client) openResumableWriter(w *Writer) error {
	sessionID, err := c.createStreamSession(w.ctx, w.spec, w.options.expectedSize, w.options.expectedBlake3)
	if err != nil {
		return err
	}
	r := &resumableWriter{client: c, ctx: w.ctx, sessionID: sessionID}
	w.resumable = r
	if r.inner, err = r.openInner(0); err != nil {
		c.abortStreamSession(sessionID)
		return err
	}
	return nil
}

func (r *resumableWriter) openInner(offset int64) (*Writer, error) {
	return r.client.openWriter(r.ctx, sessionBoundSpec, func(o *writerOptions) { o.session = &sessionBinding{r.sessionID, offset} })
}

// writeResumably sends p (kept until the server has stored it), resuming the stream after a transient failure.
func (w *Writer) writeResumably(p []byte) (int, error) {
	r := w.resumable
	for rest := p; len(rest) > 0; {
		// A copy, in a buffer used again once stored: the caller may reuse p, and these bytes may have to be sent again.
		var buffer []byte
		if n := len(r.free); n > 0 {
			buffer, r.free = r.free[n-1], r.free[:n-1]
		} else {
			buffer = make([]byte, messageBytes)
		}
		piece := buffer[:copy(buffer, rest)]
		rest = rest[len(piece):]
		r.kept, r.buffers = append(r.kept, piece), append(r.buffers, buffer)
		w.written += int64(len(piece))
		// Sent once: if the stream fails, resuming sends these bytes again with the rest that is kept.
		if _, err := r.inner.Write(piece); err != nil {
			if _, err := r.recover(err); err != nil {
				return 0, w.failResumable(err)
			}
		}
	}
	if w.written-r.checkedAt >= defaultPartSize {
		r.checkedAt = w.written
		if err := r.forgetStored(); err != nil {
			return 0, w.failResumable(err)
		}
	}
	for wait := 10 * time.Millisecond; w.written-r.keptFrom > maxUnstoredBytes; wait = min(2*wait, 500*time.Millisecond) {
		if err := sleepCtx(r.ctx, wait); err != nil {
			return 0, w.failResumable(err)
		}
		if err := r.forgetStored(); err != nil {
			return 0, w.failResumable(err)
		}
	}
	if w.options.onProgress != nil {
		w.options.onProgress(w.written)
	}
	return len(p), nil
}

// commitResumably ends the session's stream with the gathered metadata; after a transient failure
// the stream is resumed and committed again, or, when its end got through and the answer did not,
// the session's artifact is answered.
func (w *Writer) commitResumably() (*UploadResponse, error) {
	r := w.resumable
	for {
		w.mu.Lock()
		r.inner.AddLabels(maps.Clone(w.labels)).AddMetrics(maps.Clone(w.metrics)).AddTags(w.tags...)
		w.mu.Unlock()
		response, err := r.inner.Commit()
		if err == nil {
			w.state, w.result = writerCommitted, response
			r.kept, r.buffers, r.free = nil, nil, nil
			w.cancel()
			return response, nil
		}
		artifactID, err := r.recover(err)
		if err != nil {
			return nil, w.failResumable(err)
		}
		if artifactID != "" {
			artifact, err := r.client.Get(r.ctx, artifactID)
			if err != nil {
				return nil, w.failResumable(err)
			}
			w.state, w.result = writerCommitted, &UploadResponse{Artifact: artifact}
			r.kept, r.buffers, r.free = nil, nil, nil
			w.cancel()
			return w.result, nil
		}
	}
}

// recover resumes after err if it is transient, trying again (within the
// client's retry policy) while resuming fails transiently; it answers the
// artifact's id when the session turns out completed.
func (r *resumableWriter) recover(err error) (string, error) {
	for attempt := 1; ; attempt++ {
		if attempt >= r.client.retry.MaxAttempts || r.ctx.Err() != nil || !IsTransient(err) {
			return "", err
		}
		if waitErr := r.client.retry.wait(r.ctx, attempt, err); waitErr != nil {
			return "", err
		}
		var artifactID string
		if artifactID, err = r.resume(); err == nil {
			return artifactID, nil
		}
	}
}

// resume opens a new stream at the session's resume_offset and sends the kept bytes again.
func (r *resumableWriter) resume() (string, error) {
	session, err := r.session()
	if err != nil {
		return "", err
	}
	if session.GetState() == artifactsv1.UploadSessionState_UPLOAD_SESSION_STATE_COMPLETED {
		return session.GetArtifactId(), nil
	}
	offset := session.GetResumeOffset()
	if offset < r.keptFrom {
		return "", connect.NewError(connect.CodeDataLoss, fmt.Errorf("the upload session resumes at byte %d, before the %d this writer still holds", offset, r.keptFrom))
	}
	r.forgetBefore(offset)
	r.inner.Abort()
	if r.inner, err = r.openInner(offset); err != nil {
		return "", err
	}
	for _, piece := range r.kept {
		if _, err := r.inner.Write(piece); err != nil {
			return "", err
		}
	}
	return "", nil
}

func (r *resumableWriter) session() (*artifactsv1.UploadSession, error) {
	response, err := r.client.rpc.GetUploadSession(r.ctx, connect.NewRequest(&artifactsv1.GetUploadSessionRequest{SessionId: r.sessionID}))
	if err != nil {
		return nil, err
	}
	return response.Msg.GetSession(), nil
}

// forgetStored asks the server how far it has stored and drops the kept bytes before that.
func (r *resumableWriter) forgetStored() error {
	session, err := r.session()
	if err != nil {
		// Only memory is at stake: a failed question is asked again at the next boundary, or while waiting.
		if IsTransient(err) {
			return nil
		}
		return err
	}
	if offset := session.GetResumeOffset(); offset > r.keptFrom {
		r.forgetBefore(offset)
	}
	return nil
}

func (r *resumableWriter) forgetBefore(offset int64) {
	for len(r.kept) > 0 && r.keptFrom+int64(len(r.kept[0])) <= offset {
		r.keptFrom += int64(len(r.kept[0]))
		r.free = append(r.free, r.buffers[0])
		r.kept[0], r.buffers[0] = nil, nil
		r.kept, r.buffers = r.kept[1:], r.buffers[1:]
	}
	if len(r.kept) > 0 && r.keptFrom < offset {
		r.kept[0] = r.kept[0][offset-r.keptFrom:]
		r.keptFrom = offset
	}
}

// failResumable ends the writer: the session goes first (its stored parts are freed, and nothing
// the open stream does can complete it any more), then the stream.
func (w *Writer) failResumable(err error) error {
	if w.state != writerOpen {
		return w.closedErr("write")
	}
	r := w.resumable
	r.client.abortStreamSession(r.sessionID)
	r.inner.Abort()
	w.state, w.err = writerFailed, wrapErr(w.ctx, err)
	r.kept, r.buffers, r.free = nil, nil, nil
	w.cancel()
	return w.err
}

func (w *Writer) closeResumable() {
	r := w.resumable
	r.client.abortStreamSession(r.sessionID)
	r.inner.Abort()
	r.kept, r.buffers, r.free = nil, nil, nil
	w.cancel()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
