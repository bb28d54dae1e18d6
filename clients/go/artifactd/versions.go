package artifactd

import (
	"context"
	"iter"
	"strings"

	"connectrpc.com/connect"

	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

type (
	// AliasMove is one change of an alias: set, moved or removed, by whom and when.
	AliasMove = artifactsv1.AliasMove
	// Usage is a run's recorded use of an artifact (RecordUsage, Lineage's usages).
	Usage = artifactsv1.ArtifactUsage
)

// Lookup is BatchGet's answer for one artifact asked for: the artifact, or
// NotFound saying why there is none.
type Lookup struct {
	// Requested is the id or reference as the caller wrote it.
	Requested string
	Artifact  *Artifact
	NotFound  string
}

// AliasOption configures SetAlias.
type AliasOption func(*artifactsv1.SetAliasRequest)

// IfAliasAt makes SetAlias a compare-and-set: the alias moves only if it
// points at artifactID now ("": only if it does not exist yet), else the
// call fails with ABORTED, so two writers never lose each other's move
// unknowingly.
func IfAliasAt(artifactID string) AliasOption {
	return func(r *artifactsv1.SetAliasRequest) { r.ExpectedArtifactId = &artifactID }
}

// SetAlias points alias of a versioned name at the version idOrRef names
// (`orders@v3`, an id, …) and answers the move it recorded (from equals to
// when the alias already pointed there). reason is kept in the alias
// history. Not retried: a repeat of a compare-and-set that succeeded would
// be refused (as in the Node SDK).
func (c *Client) SetAlias(ctx context.Context, idOrRef, alias, reason string, options ...AliasOption) (*AliasMove, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	request := &artifactsv1.SetAliasRequest{ArtifactId: id, Alias: alias, Reason: reason}
	for _, option := range options {
		option(request)
	}
	response, err := c.rpc.SetAlias(ctx, connect.NewRequest(request))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg.GetMove(), nil
}

// DeleteAlias removes an alias of a versioned name (`orders`, or
// `team/orders` for project team) and answers the move to nothing;
// NOT_FOUND when the name has no such alias. Not retried (as in the Node SDK).
func (c *Client) DeleteAlias(ctx context.Context, name, alias, reason string) (*AliasMove, error) {
	project, base, err := versionedName("DeleteAlias", name)
	if err != nil {
		return nil, err
	}
	response, err := c.rpc.DeleteAlias(ctx, connect.NewRequest(&artifactsv1.DeleteAliasRequest{Project: project, Name: base, Alias: alias, Reason: reason}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg.GetMove(), nil
}

// ListVersions yields a versioned name's versions (`orders`, or
// `team/orders`), newest first, each with its aliases, one page per
// iteration (deleted ones too with includeDeleted); NOT_FOUND when the
// tenant has no such name.
func (c *Client) ListVersions(ctx context.Context, name string, pageSize PageSize, includeDeleted bool) iter.Seq2[[]*Artifact, error] {
	project, base, err := versionedName("ListVersions", name)
	return pages(func(token string) ([]*Artifact, string, error) {
		if err != nil {
			return nil, "", err
		}
		response, err := c.rpc.ListVersions(ctx, connect.NewRequest(&artifactsv1.ListVersionsRequest{
			Project: project, Name: base, PageSize: int32(pageSize), PageToken: token, IncludeDeleted: includeDeleted,
		}))
		if err != nil {
			return nil, "", wrapErr(ctx, err)
		}
		return response.Msg.GetVersions(), response.Msg.GetNextPageToken(), nil
	})
}

// AliasHistory yields the moves of a name's aliases (of alias only, unless
// it is ""), newest first, fetching pages of pageSize as it goes; a failed
// page is yielded as the error and ends it.
func (c *Client) AliasHistory(ctx context.Context, name, alias string, pageSize PageSize) iter.Seq2[*AliasMove, error] {
	return func(yield func(*AliasMove, error) bool) {
		project, base, err := versionedName("AliasHistory", name)
		if err != nil {
			yield(nil, err)
			return
		}
		token := ""
		for {
			response, err := c.rpc.ListAliasHistory(ctx, connect.NewRequest(&artifactsv1.ListAliasHistoryRequest{
				Project: project, Name: base, Alias: alias, PageSize: int32(pageSize), PageToken: token,
			}))
			if err != nil {
				yield(nil, wrapErr(ctx, err))
				return
			}
			for _, move := range response.Msg.GetMoves() {
				if !yield(move, nil) {
					return
				}
			}
			if token = response.Msg.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// BatchGet reads up to the server's ARTIFACTD_MAX_BATCH_ITEMS artifacts by
// id or reference in one call, answered in the order asked; one that is not
// found is reported in its place (Lookup.NotFound), not as the call's
// error. includeContent also answers inline content. A malformed reference
// is refused before any call.
func (c *Client) BatchGet(ctx context.Context, idsOrRefs []string, includeContent bool) ([]Lookup, error) {
	ids := make([]string, len(idsOrRefs))
	for i, locator := range idsOrRefs {
		id, err := requestID(locator)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	response, err := c.rpc.BatchGetArtifacts(ctx, connect.NewRequest(&artifactsv1.BatchGetArtifactsRequest{Ids: ids, IncludeContent: includeContent}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	results := response.Msg.GetResults()
	lookups := make([]Lookup, len(results))
	for i, result := range results {
		// As the caller wrote it (artifact:// included), so results can be matched to what was asked.
		requested := result.GetRequested()
		if i < len(idsOrRefs) {
			requested = idsOrRefs[i]
		}
		lookups[i] = Lookup{Requested: requested, Artifact: result.GetArtifact(), NotFound: result.GetNotFound()}
	}
	return lookups, nil
}

// RecordUsage records that runID used an artifact (as role, which may be
// empty) without producing one from it: Lineage answers it among the
// artifact's usages. The server keeps one record per artifact, run and
// role, so a repeat answers the first record, and the call is retried like
// a read. A scoped client's runID defaults to its scope's run.
func (c *Client) RecordUsage(ctx context.Context, idOrRef, runID, role string) (*Usage, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	if runID == "" {
		runID = c.scope.GetRunId()
	}
	if runID == "" {
		return nil, invalidArgument("RecordUsage: give a run id, or use a client whose scope has one (WithScope)")
	}
	response, err := c.rpc.RecordUsage(ctx, connect.NewRequest(&artifactsv1.RecordUsageRequest{ArtifactId: id, RunId: runID, Role: role}))
	if err != nil {
		return nil, wrapErr(ctx, err)
	}
	return response.Msg.GetUsage(), nil
}

// versionedName splits `team/orders` into project and name (a name alone is
// in the default project).
func versionedName(call, name string) (project, base string, err error) {
	if name == "" {
		return "", "", invalidArgument("%s: a versioned name is required (`orders` or `project/orders`)", call)
	}
	if slash := strings.IndexByte(name, '/'); slash >= 0 {
		return name[:slash], name[slash+1:], nil
	}
	return "", name, nil
}
