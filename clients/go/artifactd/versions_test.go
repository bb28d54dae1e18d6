package artifactd_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

func TestAliasesMoveByCompareAndSetAndKeepTheirHistory(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	name := fmt.Sprintf("fraud/rules-%d", time.Now().UnixNano())
	project, base := "fraud", name[len("fraud/"):]
	spec := &artifactd.Spec{Kind: "config", Name: base, Project: project, Versioned: true}
	var versions []*artifactd.Artifact
	for i := range 3 {
		saved, err := client.SaveJSON(ctx, map[string]int{"rule": i}, spec)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, saved)
	}
	v1, v2, v3 := versions[0].GetId(), versions[1].GetId(), versions[2].GetId()

	// "" expected: only if the alias does not exist yet.
	set, err := client.SetAlias(ctx, name+"@v1", "production", "first", artifactd.IfAliasAt(""))
	if err != nil || set.GetToArtifactId() != v1 || set.GetFromArtifactId() != "" || set.GetReason() != "first" || set.GetMovedBy() == "" {
		t.Fatalf("first set: %v %v", set, err)
	}
	_, err = client.SetAlias(ctx, name+"@v2", "production", "", artifactd.IfAliasAt(""))
	expectCode(t, err, connect.CodeAborted, artifactd.ErrAborted, "production")
	// Expected where it points: moves.
	moved, err := client.SetAlias(ctx, name+"@v2", "production", "promoted", artifactd.IfAliasAt(v1))
	if err != nil || moved.GetFromArtifactId() != v1 || moved.GetToArtifactId() != v2 || moved.GetFromVersion() != 1 || moved.GetToVersion() != 2 {
		t.Fatalf("compare-and-set move: %v %v", moved, err)
	}
	// A stale expectation (another writer moved it meanwhile): ABORTED, not retried, nothing moved.
	_, err = client.SetAlias(ctx, name+"@v3", "production", "", artifactd.IfAliasAt(v1))
	expectCode(t, err, connect.CodeAborted, artifactd.ErrAborted, "")
	if got, err := client.Get(ctx, name+":production"); err != nil || got.GetId() != v2 {
		t.Fatalf("production names %v after a refused move, %v; want %s", got.GetId(), err, v2)
	}
	if _, err := client.SetAlias(ctx, v3, "staging", ""); err != nil {
		t.Fatal(err)
	}

	// Versions, newest first, a page at a time, with their aliases.
	var listed []string
	pages := 0
	for page, err := range client.ListVersions(ctx, name, 2, false) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, version := range page {
			listed = append(listed, version.GetId())
			if version.GetId() == v2 && !slices.Contains(version.GetAliases(), "production") {
				t.Fatalf("v2's aliases %v lack production", version.GetAliases())
			}
		}
	}
	if !slices.Equal(listed, []string{v3, v2, v1}) || pages != 2 {
		t.Fatalf("versions %v in %d pages; want %v in 2", listed, pages, []string{v3, v2, v1})
	}

	removed, err := client.DeleteAlias(ctx, name, "staging", "cleanup")
	if err != nil || removed.GetFromArtifactId() != v3 || removed.GetToArtifactId() != "" || removed.GetReason() != "cleanup" {
		t.Fatalf("DeleteAlias: %v %v", removed, err)
	}
	_, err = client.DeleteAlias(ctx, name, "staging", "")
	expectCode(t, err, connect.CodeNotFound, artifactd.ErrNotFound, "staging")
	_, err = client.Get(ctx, name+":staging")
	expectCode(t, err, connect.CodeNotFound, artifactd.ErrNotFound, "staging")

	// The history, newest first: every alias, or one.
	var history []string
	for move, err := range client.AliasHistory(ctx, name, "", 1) {
		if err != nil {
			t.Fatal(err)
		}
		history = append(history, fmt.Sprintf("%s %d→%d", move.GetAlias(), move.GetFromVersion(), move.GetToVersion()))
	}
	want := []string{"staging 3→0", "staging 0→3", "production 1→2", "production 0→1"}
	if !slices.Equal(history, want) {
		t.Fatalf("alias history %v; want %v", history, want)
	}
	var production []string
	for move, err := range client.AliasHistory(ctx, name, "production", 0) {
		if err != nil {
			t.Fatal(err)
		}
		production = append(production, move.GetToArtifactId())
	}
	if !slices.Equal(production, []string{v2, v1}) {
		t.Fatalf("production's history %v", production)
	}

	// Names the tenant does not have; malformed ones before any call.
	for _, err := range client.ListVersions(ctx, "fraud/no-such-name", 0, false) {
		expectCode(t, err, connect.CodeNotFound, artifactd.ErrNotFound, "no-such-name")
	}
	for _, err := range client.AliasHistory(ctx, "", "", 0) {
		expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "a versioned name is required")
	}
	_, err = client.SetAlias(ctx, name+"@v0", "production", "")
	expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "v0")
}

func TestBatchGetAnswersInTheOrderAskedWithWhatWasNotFound(t *testing.T) {
	client := newClient(t)
	other := newClientAt(t, server.URL, server.Tokens["beta"])
	ctx := testContext(t)
	first, err := client.SaveJSON(ctx, map[string]int{"n": 1}, &artifactd.Spec{Kind: "summary"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := client.SaveText(ctx, "two", &artifactd.Spec{Kind: "summary"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.SaveText(ctx, "beta's", &artifactd.Spec{Kind: "summary"})
	if err != nil {
		t.Fatal(err)
	}
	asked := []string{second.GetId(), artifactd.URIScheme + first.GetId(), foreign.GetId(), "json_01jf00000000000000000000zz"}
	results, err := client.BatchGet(ctx, asked, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(asked) {
		t.Fatalf("%d results for %d asked", len(results), len(asked))
	}
	for i, result := range results {
		if result.Requested != asked[i] {
			t.Fatalf("result %d answers %q; asked %q", i, result.Requested, asked[i])
		}
	}
	if results[0].Artifact.GetId() != second.GetId() || results[0].Artifact.GetInlineContent().GetText() != "two" {
		t.Fatalf("first result %v", results[0].Artifact)
	}
	if results[1].Artifact.GetId() != first.GetId() || results[1].NotFound != "" {
		t.Fatalf("second result %+v", results[1])
	}
	// Another tenant's artifact is not found, as one that never existed.
	for _, missing := range results[2:] {
		if missing.Artifact != nil || missing.NotFound == "" {
			t.Fatalf("%s: %+v; want not found", missing.Requested, missing)
		}
	}
	_, err = client.BatchGet(ctx, []string{first.GetId(), "not an id"}, false)
	expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "not an id")
}
