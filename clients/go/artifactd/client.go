// Package artifactd is the Go client of artifactd, an artifact store that
// services call over gRPC: streaming saves and verified loads of any size,
// small JSON and text kept inline, directories, queries, lineage and a
// watch of changes.
//
// Every call takes a context.Context: cancelling it cancels the call, and
// its deadline reaches the server as the gRPC deadline. Errors are Go
// errors that carry the server's gRPC code and message: connect.CodeOf(err)
// answers the code, and errors.Is(err, artifactd.ErrNotFound) (and the
// other Err… values) tests for one. The client behaves like the Node SDK
// (clients/node) wherever both do the same thing: the same retries, chunk
// sizes, inline limits, directory manifests and direct-to-storage downloads.
package artifactd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
	"github.com/artifactd/artifactd/clients/go/gen/artifacts/v1/artifactsv1connect"
)

const (
	kiB = 1024
	miB = 1024 * 1024

	// messageBytes is the content carried by one Upload message: the service
	// is fastest with 256 KiB–1 MiB messages, and the Node SDK sends 256 KiB.
	messageBytes = 256 * kiB
	// heldUploadBytes is what a writer holds before it opens the stream: a
	// content that ends within it is sent whole at Commit, as the Node SDK does.
	heldUploadBytes = 64 * kiB
	// defaultPartSize is the part size of resumable uploads (the service's
	// default): a dropped stream resumes at a part boundary.
	defaultPartSize = 8 * miB
)

// Client talks to one artifactd service over one HTTP/2 connection. It is
// safe for concurrent use; Close releases its idle connections.
type Client struct {
	rpc        artifactsv1connect.ArtifactServiceClient
	httpClient *http.Client
	ownsHTTP   bool
	retry      RetryPolicy
	timeout    time.Duration

	resumableAbove int64
	inlineMaxBytes int
	contentFirst   bool
	direct         DirectDownloadMode
	directHTTP     *http.Client

	// scope is the provenance a scoped client (WithScope) fills in and narrows to; nil for the client New made.
	scope *Provenance
	// shared is what a client and its scoped clients learn about the server together.
	shared *sharedState
}

// sharedState is what a client learns about its server, shared with its scoped clients.
type sharedState struct {
	mu                sync.Mutex
	directUnavailable time.Time // downloads go through the service until then
	findMissingBatch  int
	findMissingServed bool
}

// DirectDownloadMode says whether downloads may come straight from the blob
// store (presigned links) instead of through the service.
type DirectDownloadMode int

const (
	// DirectWhenOffered uses direct links where the server offers them,
	// falling back to the service (the default, as in the Node SDK).
	DirectWhenOffered DirectDownloadMode = iota
	// DirectNever sends every download through the service.
	DirectNever
	// DirectAlways allows nothing else: a refusal or an unreachable store
	// fails the download.
	DirectAlways
)

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses your own HTTP client for the service (it must speak
// HTTP/2, cleartext for http:// URLs); Close then leaves it alone.
func WithHTTPClient(c *http.Client) Option {
	return func(cl *Client) { cl.httpClient, cl.ownsHTTP = c, false }
}

// WithRetry sets the retry policy of transient failures (see RetryPolicy);
// WithRetry(RetryPolicy{MaxAttempts: 1}) turns retries off.
func WithRetry(p RetryPolicy) Option { return func(c *Client) { c.retry = p.withDefaults() } }

// WithTimeout gives every unary call (Get, List pages, SaveJSON, Delete, …)
// this deadline when its context has none sooner. Transfers do not get it:
// give their context a deadline of its own.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithResumableAbove makes UploadFile send files of this size or larger
// through a resumable upload session (default 16 MiB).
func WithResumableAbove(bytes int64) Option { return func(c *Client) { c.resumableAbove = bytes } }

// WithInlineMaxBytes sets the largest content SaveJSON and SaveText store
// inline (default 256 KiB); larger content is stored as a blob.
func WithInlineMaxBytes(n int) Option { return func(c *Client) { c.inlineMaxBytes = n } }

// WithContentFirst(false) makes UploadFile and SaveDir send every byte
// instead of asking the server first which contents it already has.
func WithContentFirst(on bool) Option { return func(c *Client) { c.contentFirst = on } }

// WithDirectDownloads sets whether downloads may come straight from the
// blob store (default DirectWhenOffered).
func WithDirectDownloads(mode DirectDownloadMode) Option { return func(c *Client) { c.direct = mode } }

// New returns a client of the service at baseURL (http://host:port for
// cleartext HTTP/2, https:// for TLS) calling with token.
func New(baseURL, token string, options ...Option) (*Client, error) {
	parsed, err := url.Parse(baseURL)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return nil, fmt.Errorf("artifactd: base URL %q must be http://host:port or https://host:port", baseURL)
	}
	if token == "" {
		return nil, errors.New("artifactd: a token is required (adt_…)")
	}
	c := &Client{
		retry:          RetryPolicy{}.withDefaults(),
		resumableAbove: 16 * miB,
		inlineMaxBytes: 256 * kiB,
		contentFirst:   true,
		shared:         &sharedState{findMissingBatch: 1000, findMissingServed: true},
	}
	for _, option := range options {
		option(c)
	}
	if c.httpClient == nil {
		c.httpClient, c.ownsHTTP = &http.Client{Transport: newHTTP2Transport()}, true
	}
	c.directHTTP = &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: directConnectTimeout}).DialContext,
		ResponseHeaderTimeout: directConnectTimeout,
		MaxIdleConnsPerHost:   8,
	}}
	c.rpc = artifactsv1connect.NewArtifactServiceClient(
		c.httpClient,
		strings.TrimSuffix(baseURL, "/"),
		connect.WithGRPC(),
		connect.WithInterceptors(&callInterceptor{token: "Bearer " + token, client: c}),
	)
	return c, nil
}

// Close releases the client's idle connections (its own HTTP client's);
// a client and its scoped clients share them.
func (c *Client) Close() error {
	if c.ownsHTTP {
		c.httpClient.CloseIdleConnections()
	}
	c.directHTTP.CloseIdleConnections()
	return nil
}

// RPC is the generated Connect client over this client's connection, token
// and retries, for calls this package does not wrap.
func (c *Client) RPC() artifactsv1connect.ArtifactServiceClient { return c.rpc }

// newHTTP2Transport speaks HTTP/2 only: cleartext (prior knowledge) for
// http:// URLs, TLS for https://. Receive windows are wide so a download is
// not held back by flow control on a fast link.
func newHTTP2Transport() *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	return &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		DialContext:     (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		Protocols:       protocols,
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     16 * miB,
			MaxReceiveBufferPerConnection: 64 * miB,
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
		},
	}
}

// retriedMethods are the unary calls sent again after a transient failure:
// reads, and writes the server makes idempotent. SaveInline, SetStatus (see
// Client.SetStatus) and CreateUploadSession without a key are not: a repeat
// could record twice. The Node SDK's list (artifact-connection.ts).
var retriedMethods = map[string]bool{
	"GetArtifact": true, "ListArtifacts": true, "SearchArtifacts": true, "GetBestArtifact": true,
	"GetLineage": true, "RecordUsage": true, "BatchGetArtifacts": true, "ListVersions": true,
	"ListAliasHistory": true, "SetPinned": true, "DeleteArtifact": true, "ArchiveRun": true,
	"CreateDownloadUrl": true, "FindMissingContent": true, "GetUploadSession": true,
	"UploadPart": true, "CompleteUploadSession": true, "AbortUploadSession": true,
}

// callInterceptor puts the token on every call, gives unary calls the
// client's timeout, and retries the unary calls that are safe to repeat.
type callInterceptor struct {
	token  string
	client *Client
}

func (i *callInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", i.token)
		method := req.Spec().Procedure[strings.LastIndexByte(req.Spec().Procedure, '/')+1:]
		keyed := false
		if create, ok := req.Any().(*artifactsv1.CreateUploadSessionRequest); ok && create.GetIdempotencyKey() != "" {
			keyed = true
		}
		if i.client.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, i.client.timeout)
			defer cancel()
		}
		if !retriedMethods[method] && !keyed {
			return next(ctx, req)
		}
		var response connect.AnyResponse
		err := i.client.retry.run(ctx, func() error {
			var err error
			response, err = next(ctx, req)
			return err
		})
		return response, err
	}
}

func (i *callInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", i.token)
		return conn
	}
}

func (i *callInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
