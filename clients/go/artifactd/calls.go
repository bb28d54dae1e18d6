package artifactd

import (
	"context"
	"errors"
	"iter"

	"connectrpc.com/connect"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

type (
	// Status is an artifact's review status.
	Status = artifactsv1.Status
	// WatchEvent is one change WatchArtifacts reports, with its resumable cursor.
	WatchEvent = artifactsv1.WatchArtifactsResponse
	// Lineage is GetLineage's answer: ancestors, descendants, edges and usages.
	Lineage = artifactsv1.GetLineageResponse
)

// Event types a watch reports.
const (
	EventCreated       = artifactsv1.EventType_EVENT_TYPE_CREATED
	EventStatusChanged = artifactsv1.EventType_EVENT_TYPE_STATUS_CHANGED
	EventPinned        = artifactsv1.EventType_EVENT_TYPE_PINNED
	EventUnpinned      = artifactsv1.EventType_EVENT_TYPE_UNPINNED
	EventDeleted       = artifactsv1.EventType_EVENT_TYPE_DELETED
	EventAliasMoved    = artifactsv1.EventType_EVENT_TYPE_ALIAS_MOVED
)

// Review statuses.
const (
	StatusDraft    = artifactsv1.Status_STATUS_DRAFT
	StatusReview   = artifactsv1.Status_STATUS_REVIEW
	StatusApproved = artifactsv1.Status_STATUS_APPROVED
	StatusRejected = artifactsv1.Status_STATUS_REJECTED
)

// Get answers an artifact's record; deleted artifacts are answered too, with DeletedAt set.
func (c *Client) Get(ctx context.Context, idOrRef string) (*Artifact, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	response, err := c.rpc.GetArtifact(ctx, connect.NewRequest(&artifactsv1.GetArtifactRequest{Id: id}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg.GetArtifact(), nil
}

// PageSize sets how many artifacts each page of List or Search holds (1–1000; default 100).
type PageSize int32

// List yields the artifacts matching filter (nil: all), newest first, one
// page per iteration; a failed page is yielded as the error and ends it.
//
//	for page, err := range client.List(ctx, &artifactd.Filter{Kind: "model"}, 0) { … }
func (c *Client) List(ctx context.Context, filter *Filter, pageSize PageSize) iter.Seq2[[]*Artifact, error] {
	return pages(func(token string) ([]*Artifact, string, error) {
		response, err := c.rpc.ListArtifacts(ctx, connect.NewRequest(&artifactsv1.ListArtifactsRequest{Filter: c.scopedFilter(filter), PageSize: int32(pageSize), PageToken: token}))
		if err != nil {
			return nil, "", wrapErr(ctx, err)
		}
		return response.Msg.GetArtifacts(), response.Msg.GetNextPageToken(), nil
	})
}

// Search yields the matches of a ranked search (fragments and words of
// name, title, kind, tags, labels and inline content) within filter, best
// first, one page per iteration.
func (c *Client) Search(ctx context.Context, query string, filter *Filter, pageSize PageSize) iter.Seq2[[]*Artifact, error] {
	return pages(func(token string) ([]*Artifact, string, error) {
		response, err := c.rpc.SearchArtifacts(ctx, connect.NewRequest(&artifactsv1.SearchArtifactsRequest{Query: query, Filter: c.scopedFilter(filter), PageSize: int32(pageSize), PageToken: token}))
		if err != nil {
			return nil, "", wrapErr(ctx, err)
		}
		return response.Msg.GetArtifacts(), response.Msg.GetNextPageToken(), nil
	})
}

func pages(fetch func(token string) ([]*Artifact, string, error)) iter.Seq2[[]*Artifact, error] {
	return func(yield func([]*Artifact, error) bool) {
		token := ""
		for {
			page, next, err := fetch(token)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(page, nil) || next == "" {
				return
			}
			token = next
		}
	}
}

// BestOption configures Best and Top.
type BestOption func(*artifactsv1.GetBestArtifactRequest)

// Minimize makes the lowest value win instead of the highest.
func Minimize() BestOption { return func(r *artifactsv1.GetBestArtifactRequest) { r.Minimize = true } }

// Within narrows Best and Top to a filter.
func Within(filter *Filter) BestOption {
	return func(r *artifactsv1.GetBestArtifactRequest) { r.Filter = filter }
}

// Best answers the artifact of kind with the highest (Minimize: lowest)
// metric; nil, and no error, when none has the metric.
func (c *Client) Best(ctx context.Context, kind, metric string, options ...BestOption) (*Artifact, error) {
	top, err := c.Top(ctx, kind, metric, 1, options...)
	if err != nil || len(top) == 0 {
		return nil, err
	}
	return top[0], nil
}

// Top answers the best limit artifacts, best first; empty when none has the metric.
func (c *Client) Top(ctx context.Context, kind, metric string, limit int, options ...BestOption) ([]*Artifact, error) {
	if limit < 1 {
		return nil, invalidArgument("Top: limit must be >= 1, got %d", limit)
	}
	request := &artifactsv1.GetBestArtifactRequest{Kind: kind, Metric: metric, Limit: int32(limit)}
	for _, option := range options {
		option(request)
	}
	request.Filter = c.scopedFilter(request.Filter)
	response, err := c.rpc.GetBestArtifact(ctx, connect.NewRequest(request))
	if err != nil {
		// NOT_FOUND is the server's "no artifact has that metric within the filter": an answer, not a failure.
		if connect.CodeOf(err) == connect.CodeNotFound {
			return nil, nil
		}
		return nil, wrapErr(ctx, err)
	}
	if top := response.Msg.GetTop(); len(top) > 0 {
		return top, nil
	}
	if artifact := response.Msg.GetArtifact(); artifact != nil {
		return []*Artifact{artifact}, nil
	}
	return nil, nil
}

// Lineage answers ancestors, descendants and edges to depth (1–32; 0: 1)
// and the runs that used the artifact itself.
func (c *Client) Lineage(ctx context.Context, idOrRef string, depth int) (*Lineage, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	response, err := c.rpc.GetLineage(ctx, connect.NewRequest(&artifactsv1.GetLineageRequest{Id: id, Depth: int32(depth)}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg, nil
}

// Pin pins (true) or unpins (false) an artifact; repeating it is harmless.
func (c *Client) Pin(ctx context.Context, idOrRef string, pinned bool) (*Artifact, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	response, err := c.rpc.SetPinned(ctx, connect.NewRequest(&artifactsv1.SetPinnedRequest{Id: id, Pinned: pinned}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg.GetArtifact(), nil
}

// SetStatus moves an artifact along its review life cycle (draft → review
// → approved / rejected); FAILED_PRECONDITION for a move the cycle does not
// allow. Retried like a read: the server answers a repeat of a move already
// made with the artifact unchanged (as the Node SDK's setStatus).
func (c *Client) SetStatus(ctx context.Context, idOrRef string, status Status) (*Artifact, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	var artifact *Artifact
	err = c.retry.run(ctx, func() error {
		response, err := c.rpc.SetStatus(ctx, connect.NewRequest(&artifactsv1.SetStatusRequest{Id: id, Status: status}))
		if err == nil {
			artifact = response.Msg.GetArtifact()
		}
		return err
	})
	return artifact, wrapErr(ctx, err)
}

// Delete soft-deletes an artifact (the record stays for audit, the content
// becomes unreadable); FAILED_PRECONDITION for a pinned one. Repeating it is harmless.
func (c *Client) Delete(ctx context.Context, idOrRef string) (*Artifact, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	response, err := c.rpc.DeleteArtifact(ctx, connect.NewRequest(&artifactsv1.DeleteArtifactRequest{Id: id}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg.GetArtifact(), nil
}

// WatchOption is an option of Watch.
type WatchOption func(*watchOptions)

type watchOptions struct{ onLive func(cursor string) }

// OnLive has Watch call f when the watch is live (at once from now; after
// the backlog when resuming), and again after each reconnection: every event
// committed from then on will come. f gets the cursor it is live from, and
// runs on the watch's goroutine. Servers older than the live announcement
// never call it.
func OnLive(f func(cursor string)) WatchOption { return func(o *watchOptions) { o.onLive = f } }

// Watch yields the events (created, status changed, pinned, unpinned,
// deleted, alias moved) of the artifacts matching filter, from after
// resumeAfter (an event's Cursor kept from before; "": from now). A stream
// that drops is opened again after the last event yielded, so nothing is
// missed or repeated, even when it drops before its first event (it resumes
// from where the server said it went live); retries follow the client's
// policy. It ends when ctx ends, when the loop breaks, or with an error
// (yielded last): a cursor older than the server keeps is OUT_OF_RANGE.
func (c *Client) Watch(ctx context.Context, filter *Filter, resumeAfter string, options ...WatchOption) iter.Seq2[*WatchEvent, error] {
	filter = c.scopedFilter(filter)
	var o watchOptions
	for _, option := range options {
		option(&o)
	}
	return func(yield func(*WatchEvent, error) bool) {
		cursor := resumeAfter
		failures := 0
		for {
			request := &artifactsv1.WatchArtifactsRequest{Filter: filter, ResumeAfter: cursor, AnnounceLive: true}
			stream, err := c.rpc.WatchArtifacts(ctx, connect.NewRequest(request))
			if err == nil {
				for stream.Receive() {
					failures = 0
					event := stream.Msg()
					cursor = event.GetCursor()
					if event.GetType() == artifactsv1.EventType_EVENT_TYPE_LIVE {
						// Not an artifact event: where the watch is live from, kept to resume from.
						if o.onLive != nil {
							o.onLive(cursor)
						}
						continue
					}
					if !yield(event, nil) {
						_ = stream.Close()
						return
					}
				}
				err = stream.Err()
				_ = stream.Close()
				if err == nil {
					// The server ends a watch only by failing it; a clean end is a connection cut short.
					err = connect.NewError(connect.CodeUnavailable, errors.New("the watch stream ended"))
				}
			}
			if ctx.Err() != nil {
				return
			}
			failures++
			if failures >= c.retry.MaxAttempts || !IsTransient(err) {
				yield(nil, wrapErr(ctx, err))
				return
			}
			if c.retry.wait(ctx, failures, err) != nil {
				return
			}
		}
	}
}
