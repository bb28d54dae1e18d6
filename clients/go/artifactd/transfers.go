package artifactd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/zeebo/blake3"
	"google.golang.org/protobuf/proto"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

// defaultMaxLoadBytes bounds LoadBytes / LoadText / LoadJSON (as the Node SDK's loaders).
const defaultMaxLoadBytes = 256 * miB

// UploadFile saves a file. Content first (the default, see
// WithContentFirst): the file is hashed and, if the server already has its
// content, the artifact is recorded by digest and no byte is sent
// (UploadResponse.Deduplicated). Files of WithResumableAbove (16 MiB) or
// more go through an upload session: after a dropped connection the upload
// continues from the last part the server stored. The size is declared, so
// a file that changes while it is read is refused.
func (c *Client) UploadFile(ctx context.Context, path string, spec *Spec, options ...WriterOption) (*UploadResponse, error) {
	if spec == nil {
		return nil, invalidArgument("UploadFile: spec is required")
	}
	spec = c.scopedSpec(spec)
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("artifactd: UploadFile: %s is not a regular file", path)
	}
	size := info.Size()
	var o writerOptions
	for _, option := range options {
		option(&o)
	}
	if c.contentFirst && c.findMissingIsServed() {
		digest := o.expectedBlake3
		if digest == "" {
			if digest, err = hashFile(path); err != nil {
				return nil, err
			}
		}
		missing, err := c.findMissing(ctx, []contentRef{{digest, size}})
		if err != nil {
			return nil, wrapErr(ctx, err)
		}
		if missing != nil && !missing[contentRef{digest, size}] {
			response, err := c.commitByDigest(ctx, spec, contentRef{digest, size})
			if err != nil || response != nil {
				return response, wrapErr(ctx, err)
			}
		}
		options = append(options, ExpectedBlake3(digest))
	}
	options = append(options, ExpectedSize(size))
	if size >= c.resumableAbove {
		return c.uploadFileResumably(ctx, path, size, spec, options)
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return c.uploadReader(ctx, file, spec, options...)
}

// SaveFile is UploadFile, answering the artifact.
func (c *Client) SaveFile(ctx context.Context, path string, spec *Spec, options ...WriterOption) (*Artifact, error) {
	response, err := c.UploadFile(ctx, path, spec, options...)
	if err != nil {
		return nil, err
	}
	return response.GetArtifact(), nil
}

// UploadReader streams r to a new artifact and commits it.
func (c *Client) UploadReader(ctx context.Context, r io.Reader, spec *Spec, options ...WriterOption) (*UploadResponse, error) {
	if spec == nil {
		return nil, invalidArgument("UploadReader: spec is required")
	}
	return c.uploadReader(ctx, r, c.scopedSpec(spec), options...)
}

func (c *Client) uploadReader(ctx context.Context, r io.Reader, spec *Spec, options ...WriterOption) (*UploadResponse, error) {
	w, err := c.openWriter(ctx, spec, options...)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := w.ReadFrom(r); err != nil {
		return nil, err
	}
	return w.Commit()
}

// uploadFileResumably sends a large file through an upload session, so a
// dropped connection costs at most the part in flight: after a transient
// failure the client asks where to continue (resume_offset) and sends the
// rest from there.
func (c *Client) uploadFileResumably(ctx context.Context, path string, size int64, spec *Spec, options []WriterOption) (*UploadResponse, error) {
	var o writerOptions
	for _, option := range options {
		option(&o)
	}
	sessionID, err := c.createStreamSession(ctx, spec, &size, o.expectedBlake3)
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	var offset int64
	for attempt := 1; ; attempt++ {
		response, err := c.uploadFilePart(ctx, path, offset, sessionID, o.onProgress)
		if err == nil {
			return response, nil
		}
		if attempt >= c.retry.MaxAttempts || ctx.Err() != nil || !IsTransient(err) {
			c.abortStreamSession(sessionID)
			return nil, wrapErr(ctx, err)
		}
		if waitErr := c.retry.wait(ctx, attempt, err); waitErr != nil {
			c.abortStreamSession(sessionID)
			return nil, wrapErr(ctx, err)
		}
		got, getErr := c.rpc.GetUploadSession(ctx, connect.NewRequest(&artifactsv1.GetUploadSessionRequest{SessionId: sessionID}))
		if getErr != nil {
			// The session cannot be asked about any more: free its stored parts now, not when it expires.
			c.abortStreamSession(sessionID)
			return nil, wrapErr(ctx, getErr)
		}
		session := got.Msg.GetSession()
		if session.GetState() == artifactsv1.UploadSessionState_UPLOAD_SESSION_STATE_COMPLETED {
			// The stream's end reached the server but its answer was lost.
			artifact, err := c.Get(ctx, session.GetArtifactId())
			if err != nil {
				return nil, err
			}
			return &UploadResponse{Artifact: artifact}, nil
		}
		offset = session.GetResumeOffset()
	}
}

func (c *Client) uploadFilePart(ctx context.Context, path string, offset int64, sessionID string, onProgress func(int64)) (*UploadResponse, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if _, err := file.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	options := []WriterOption{func(o *writerOptions) { o.session = &sessionBinding{sessionID, offset} }}
	if onProgress != nil {
		options = append(options, OnProgress(func(bytes int64) { onProgress(offset + bytes) }))
	}
	return c.uploadReader(ctx, file, sessionBoundSpec, options...)
}

// sessionBoundSpec stands for the spec of a session-bound stream: the session holds the real one.
var sessionBoundSpec = &Spec{}

// createStreamSession opens the upload session a resumable stream is bound
// to; its idempotency key makes a retried create answer the same session.
func (c *Client) createStreamSession(ctx context.Context, spec *Spec, size *int64, digest string) (string, error) {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	response, err := c.rpc.CreateUploadSession(ctx, connect.NewRequest(&artifactsv1.CreateUploadSessionRequest{
		Spec: spec, ExpectedSize: size, ExpectedBlake3: digest, PartSize: defaultPartSize,
		IdempotencyKey: "stream-" + hex.EncodeToString(key),
	}))
	if err != nil {
		return "", err
	}
	return response.Msg.GetSession().GetSessionId(), nil
}

// abortStreamSession frees a session's stored parts now rather than when it
// expires hours later; a transient failure gets one more try at once (the
// first may go out on a dead connection). Never fails: the caller is giving up.
func (c *Client) abortStreamSession(sessionID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		_, err := c.rpc.AbortUploadSession(ctx, connect.NewRequest(&artifactsv1.AbortUploadSessionRequest{SessionId: sessionID}))
		if err == nil || !IsTransient(err) {
			return
		}
	}
}

// contentRef is a content by BLAKE3 (lowercase hex) and size.
type contentRef struct {
	blake3 string
	size   int64
}

var serverBatchLimit = regexp.MustCompile(`at most (\d+) are allowed \(ARTIFACTD_MAX_BATCH_ITEMS\)`)

func (c *Client) findMissingIsServed() bool {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	return c.shared.findMissingServed
}

// findMissing answers which of contents the tenant lacks (FindMissingContent
// in batches), or nil when the server cannot say (an older one): send everything then.
func (c *Client) findMissing(ctx context.Context, contents []contentRef) (map[contentRef]bool, error) {
	missing := map[contentRef]bool{}
	for start := 0; start < len(contents); {
		c.shared.mu.Lock()
		batch := c.shared.findMissingBatch
		c.shared.mu.Unlock()
		asked := contents[start:min(start+batch, len(contents))]
		request := &artifactsv1.FindMissingContentRequest{}
		for _, content := range asked {
			request.Contents = append(request.Contents, &artifactsv1.ContentDigest{Blake3: content.blake3, SizeBytes: content.size})
		}
		response, err := c.rpc.FindMissingContent(ctx, connect.NewRequest(request))
		if err != nil {
			switch connect.CodeOf(err) {
			case connect.CodeUnimplemented:
				c.shared.mu.Lock()
				c.shared.findMissingServed = false
				c.shared.mu.Unlock()
				return nil, nil
			case connect.CodeInvalidArgument:
				// A server whose limit is lower than our batch: ask again within it.
				if match := serverBatchLimit.FindStringSubmatch(err.Error()); match != nil {
					if limit, _ := strconv.Atoi(match[1]); limit >= 1 && limit < len(asked) {
						c.shared.mu.Lock()
						c.shared.findMissingBatch = limit
						c.shared.mu.Unlock()
						continue
					}
				}
			}
			return nil, err
		}
		for _, m := range response.Msg.GetMissing() {
			missing[contentRef{m.GetBlake3(), m.GetSizeBytes()}] = true
		}
		start += len(asked)
	}
	return missing, nil
}

// commitByDigest records a new artifact of content the tenant has, sending
// no bytes; nil (no error) when the content vanished since it was asked
// about (FAILED_PRECONDITION): send the bytes then.
func (c *Client) commitByDigest(ctx context.Context, spec *Spec, content contentRef) (*UploadResponse, error) {
	stream := c.rpc.Upload(ctx)
	size := content.size
	err := stream.Send(&artifactsv1.UploadRequest{Message: &artifactsv1.UploadRequest_Header{Header: &artifactsv1.UploadHeader{
		Spec: spec, ExpectedBlake3: content.blake3, ExpectedSize: &size, ContentByDigest: true,
	}}})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	response, err := stream.CloseAndReceive()
	if err != nil {
		if connect.CodeOf(err) == connect.CodeFailedPrecondition {
			return nil, nil
		}
		return nil, err
	}
	return response.Msg, nil
}

// DownloadToFile downloads to path: written to a file beside it and renamed
// into place only once size and BLAKE3 are verified; on any failure the
// partial file is removed and path is left untouched.
func (c *Client) DownloadToFile(ctx context.Context, idOrRef, path string, options ...OpenOption) (*Artifact, error) {
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	partial := fmt.Sprintf("%s.partial-%s", path, hex.EncodeToString(suffix))
	file, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Artifact, error) {
		_ = file.Close()
		_ = os.Remove(partial)
		return nil, err
	}
	reader, err := c.Open(ctx, idOrRef, options...)
	if err != nil {
		return fail(err)
	}
	defer reader.Close()
	if _, err := io.CopyBuffer(file, reader, make([]byte, messageBytes)); err != nil {
		return fail(err)
	}
	if err := file.Sync(); err != nil {
		return fail(err)
	}
	if err := file.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(partial, path); err != nil {
		_ = os.Remove(partial)
		return nil, err
	}
	return reader.Artifact(), nil
}

// SaveJSON saves a JSON value: inline (queryable as JSONB) up to
// WithInlineMaxBytes (256 KiB), as a blob (application/json) above it or
// past a stricter server's limit. Id prefix json unless the spec names one.
func (c *Client) SaveJSON(ctx context.Context, value any, spec *Spec) (*Artifact, error) {
	var buffer bytes.Buffer
	encoder := json.NewEncoder(&buffer)
	// As JSON.stringify writes it: <, > and & as themselves.
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(value); err != nil {
		return nil, fmt.Errorf("artifactd: SaveJSON: the value cannot be encoded as JSON: %w", err)
	}
	return c.saveSmall(ctx, "json", bytes.TrimSuffix(buffer.Bytes(), []byte("\n")), spec)
}

// SaveText saves UTF-8 text, inline or as a blob (text/plain; charset=utf-8)
// as SaveJSON does. Id prefix txt unless the spec names one.
func (c *Client) SaveText(ctx context.Context, text string, spec *Spec) (*Artifact, error) {
	return c.saveSmall(ctx, "text", []byte(text), spec)
}

func (c *Client) saveSmall(ctx context.Context, kind string, content []byte, spec *Spec) (*Artifact, error) {
	if spec == nil {
		return nil, invalidArgument("Save%s: spec is required", map[string]string{"json": "JSON", "text": "Text"}[kind])
	}
	spec = c.scopedSpec(spec)
	if len(content) <= c.inlineMaxBytes {
		request := &artifactsv1.SaveInlineRequest{Spec: spec}
		if kind == "json" {
			request.Content = &artifactsv1.SaveInlineRequest_Json{Json: string(content)}
		} else {
			request.Content = &artifactsv1.SaveInlineRequest_Text{Text: string(content)}
		}
		response, err := c.rpc.SaveInline(ctx, connect.NewRequest(request))
		if err == nil {
			return response.Msg.GetArtifact(), nil
		}
		// A server whose inline limit is lower than ours: store it as a blob instead.
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			return nil, wrapErr(ctx, err)
		}
	}
	blobSpec := proto.CloneOf(spec)
	if blobSpec.MimeType == "" {
		blobSpec.MimeType = map[string]string{"json": "application/json", "text": "text/plain; charset=utf-8"}[kind]
	}
	if blobSpec.TypePrefix == "" {
		blobSpec.TypePrefix = map[string]string{"json": "json", "text": "txt"}[kind]
	}
	response, err := c.uploadReader(ctx, bytes.NewReader(content), blobSpec, ExpectedSize(int64(len(content))))
	if err != nil {
		return nil, err
	}
	return response.GetArtifact(), nil
}

// LoadBytes reads an artifact's content into memory, BLAKE3-verified; more
// than 256 MiB is refused before any content is read (use Open or
// DownloadToFile for large content).
func (c *Client) LoadBytes(ctx context.Context, idOrRef string) ([]byte, error) {
	reader, err := c.Open(ctx, idOrRef)
	if err != nil {
		return nil, err
	}
	defer reader.Close()
	if reader.Size() > defaultMaxLoadBytes {
		return nil, fmt.Errorf("artifactd: artifact %s holds %d bytes, more than LoadBytes takes (%d); use Open or DownloadToFile",
			reader.Artifact().GetId(), reader.Size(), defaultMaxLoadBytes)
	}
	content := make([]byte, 0, reader.Size())
	buffer := bytes.NewBuffer(content)
	if _, err := buffer.ReadFrom(reader); err != nil {
		return nil, err
	}
	return buffer.Bytes(), nil
}

// LoadText reads an artifact's content as text.
func (c *Client) LoadText(ctx context.Context, idOrRef string) (string, error) {
	content, err := c.LoadBytes(ctx, idOrRef)
	return string(content), err
}

// LoadJSON reads an artifact's content (inline JSON or a JSON blob) into
// value, as json.Unmarshal does.
func (c *Client) LoadJSON(ctx context.Context, idOrRef string, value any) error {
	content, err := c.LoadBytes(ctx, idOrRef)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(content, value); err != nil {
		return fmt.Errorf("artifactd: artifact %s is not the JSON asked for: %w", idOrRef, err)
	}
	return nil
}

// hashFile is a file's BLAKE3 (lowercase hex), read in bounded memory.
func hashFile(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	hasher := blake3.New()
	if _, err := io.CopyBuffer(hasher, file, make([]byte, miB)); err != nil {
		return "", err
	}
	return hex.EncodeToString(hasher.Sum(nil)), nil
}

// partialName is a fresh name beside path, for a file renamed into place later.
func partialName(path, what string) string {
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	return filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%s-%s", filepath.Base(path), what, hex.EncodeToString(suffix)))
}
