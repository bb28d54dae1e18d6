package artifactd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

// idsOf lists what an iterator of pages yields, failing the test on an error.
func idsOf(t *testing.T, pages func(func([]*artifactd.Artifact, error) bool)) []string {
	t.Helper()
	var ids []string
	for page, err := range pages {
		if err != nil {
			t.Fatal(err)
		}
		for _, artifact := range page {
			ids = append(ids, artifact.GetId())
		}
	}
	return ids
}

func TestScopedClientFillsItsProvenanceOnEveryKindOfSave(t *testing.T) {
	// A resumable threshold of 1 KiB, so UploadFile goes through an upload session too.
	client := newClient(t, artifactd.WithResumableAbove(1024))
	ctx := testContext(t)
	job := uniqueRun(t)
	scoped := client.WithScope(&artifactd.Provenance{ParentRunId: job, RunId: "step-1", GraphId: "g", NodeId: "n1"})
	dir := t.TempDir()
	large := filepath.Join(dir, "large.bin")
	if err := os.WriteFile(large, randomBytes(t, 64*1024), 0o600); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.txt")
	if err := os.WriteFile(small, []byte("small "+job), 0o600); err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(dir, "folder")
	_ = os.MkdirAll(filepath.Join(folder, "sub"), 0o755)
	_ = os.WriteFile(filepath.Join(folder, "sub", "a.txt"), []byte("a "+job), 0o644)
	_ = os.WriteFile(filepath.Join(folder, "b.txt"), []byte("b "+job), 0o644)

	spec := func(kind string) *artifactd.Spec { return &artifactd.Spec{Kind: kind} }
	saved := map[string]*artifactd.Artifact{}
	w, err := scoped.OpenWriter(ctx, spec("log"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("line\n"))
	committed, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	saved["OpenWriter"] = committed.GetArtifact()
	uploaded, err := scoped.UploadFile(ctx, large, spec("dataset"))
	if err != nil {
		t.Fatal(err)
	}
	saved["UploadFile (session)"] = uploaded.GetArtifact()
	// The same content again: recorded by digest (content first), no byte sent.
	again, err := scoped.UploadFile(ctx, large, spec("dataset"))
	if err != nil || !again.GetDeduplicated() {
		t.Fatalf("a second upload of the same file: %v, deduplicated %v", err, again.GetDeduplicated())
	}
	saved["UploadFile (by digest)"] = again.GetArtifact()
	if saved["SaveFile"], err = scoped.SaveFile(ctx, small, spec("dataset")); err != nil {
		t.Fatal(err)
	}
	read, err := scoped.UploadReader(ctx, strings.NewReader("stream"), spec("dataset"))
	if err != nil {
		t.Fatal(err)
	}
	saved["UploadReader"] = read.GetArtifact()
	if saved["SaveJSON"], err = scoped.SaveJSON(ctx, map[string]bool{"ok": true}, spec("summary")); err != nil {
		t.Fatal(err)
	}
	if saved["SaveText"], err = scoped.SaveText(ctx, "text", spec("summary")); err != nil {
		t.Fatal(err)
	}
	// Past the inline limit: stored as a blob, through the writer.
	if saved["SaveText (blob)"], err = newClient(t, artifactd.WithInlineMaxBytes(0)).WithScope(scoped.Scope()).SaveText(ctx, "blob", spec("summary")); err != nil {
		t.Fatal(err)
	}
	if saved["SaveDir"], err = scoped.SaveDir(ctx, folder, spec("checkpoint"), artifactd.DirOptions{}); err != nil {
		t.Fatal(err)
	}
	for how, artifact := range saved {
		// As stored, not only as answered.
		stored, err := client.Get(ctx, artifact.GetId())
		if err != nil {
			t.Fatal(err)
		}
		p := stored.GetProvenance()
		if p.GetParentRunId() != job || p.GetRunId() != "step-1" || p.GetGraphId() != "g" || p.GetNodeId() != "n1" {
			t.Fatalf("%s stored provenance %v", how, p)
		}
	}
	// The files of the directory artifact carry it too.
	entries := idsOf(t, client.List(ctx, &artifactd.Filter{ArtifactClass: artifactd.DirectoryEntryClass, Provenance: &artifactd.Provenance{ParentRunId: job}}, 0))
	if len(entries) != 2 {
		t.Fatalf("%d directory entries carry the scope; want 2", len(entries))
	}

	// The call's own values win; the caller's spec is left as it was.
	mine := &artifactd.Spec{Kind: "summary", Provenance: &artifactd.Provenance{RunId: "step-2", ToolName: "cli"}}
	explicit, err := scoped.SaveText(ctx, "mine", mine)
	if err != nil {
		t.Fatal(err)
	}
	p := explicit.GetProvenance()
	if p.GetParentRunId() != job || p.GetRunId() != "step-2" || p.GetNodeId() != "n1" || p.GetToolName() != "cli" {
		t.Fatalf("explicit provenance stored as %v", p)
	}
	if mine.GetProvenance().GetParentRunId() != "" {
		t.Fatal("the scope changed the caller's spec")
	}
	// A narrower scope: its fields win, the rest are kept.
	narrower := scoped.WithScope(&artifactd.Provenance{NodeId: "n2"})
	if s := narrower.Scope(); s.GetParentRunId() != job || s.GetRunId() != "step-1" || s.GetGraphId() != "g" || s.GetNodeId() != "n2" {
		t.Fatalf("narrower scope %v", s)
	}
	if scoped.Scope().GetNodeId() != "n1" || client.Scope() != nil {
		t.Fatal("narrowing changed the scope it came from")
	}
	n2, err := narrower.SaveJSON(ctx, 1, spec("summary"))
	if err != nil || n2.GetProvenance().GetNodeId() != "n2" || n2.GetProvenance().GetParentRunId() != job {
		t.Fatalf("narrower save: %v %v", n2.GetProvenance(), err)
	}
}

func TestScopedClientSeesOnlyItsArtifacts(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	job := uniqueRun(t)
	word := fmt.Sprintf("narrow%d", time.Now().UnixNano())
	scoped := client.WithScope(&artifactd.Provenance{ParentRunId: job})
	save := func(c *artifactd.Client, name string, f1 float64, p *artifactd.Provenance) string {
		t.Helper()
		a, err := c.SaveJSON(ctx, map[string]int{}, &artifactd.Spec{Kind: "model", Name: word + " " + name, Metrics: map[string]float64{"f1": f1}, Provenance: p})
		if err != nil {
			t.Fatal(err)
		}
		return a.GetId()
	}
	inside := []string{save(scoped, "a", 0.5, nil), save(scoped, "b", 0.6, &artifactd.Provenance{RunId: "r2"})}
	outside := []string{
		save(client, "c", 0.99, nil),
		save(client, "d", 0.98, &artifactd.Provenance{ParentRunId: job + "-other", RunId: "r2"}),
	}
	newestFirst := []string{inside[1], inside[0]}
	if got := idsOf(t, scoped.List(ctx, &artifactd.Filter{Kind: "model"}, 0)); !slices.Equal(got, newestFirst) {
		t.Fatalf("scoped List: %v; want %v", got, newestFirst)
	}
	if got := idsOf(t, scoped.List(ctx, nil, 1)); !slices.Equal(got, newestFirst) {
		t.Fatalf("scoped List without a filter, a page of one: %v; want %v", got, newestFirst)
	}
	if got := idsOf(t, scoped.Search(ctx, word, nil, 0)); !sameSet(got, inside) {
		t.Fatalf("scoped Search: %v; want %v", got, inside)
	}
	if best, err := scoped.Best(ctx, "model", "f1"); err != nil || best.GetId() != inside[1] {
		t.Fatalf("scoped Best: %v %v; want %s", best.GetId(), err, inside[1])
	}
	if top, err := scoped.Top(ctx, "model", "f1", 5, artifactd.Minimize()); err != nil || len(top) != 2 || top[0].GetId() != inside[0] {
		t.Fatalf("scoped Top: %v %v", top, err)
	}
	// A filter of the call's own adds to the scope: both must hold.
	if best, err := scoped.Best(ctx, "model", "f1", artifactd.Within(&artifactd.Filter{Provenance: &artifactd.Provenance{RunId: "nobody"}})); err != nil || best != nil {
		t.Fatalf("Best within a run nobody has: %v %v", best, err)
	}
	// A scope of two fields needs both.
	if got := idsOf(t, scoped.WithScope(&artifactd.Provenance{RunId: "r2"}).List(ctx, nil, 0)); !slices.Equal(got, []string{inside[1]}) {
		t.Fatalf("narrower List: %v; want %v", got, inside[1:])
	}
	// The unscoped client still sees everything.
	if got := idsOf(t, client.Search(ctx, word, nil, 0)); !sameSet(got, append(slices.Clone(inside), outside...)) {
		t.Fatalf("unscoped Search: %v", got)
	}
}

func TestScopedWatchSeesOnlyTheScopesEvents(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	job := uniqueRun(t)
	scoped := client.WithScope(&artifactd.Provenance{ParentRunId: job})
	// A cursor from before anything below: the watch delivers every later event, whenever it opens.
	cursor := watchCursor(t)
	outside, err := client.SaveText(ctx, "elsewhere", &artifactd.Spec{Kind: "log", Provenance: &artifactd.Provenance{ParentRunId: job + "-other"}})
	if err != nil {
		t.Fatal(err)
	}
	inside, err := scoped.SaveText(ctx, "inside", &artifactd.Spec{Kind: "log"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Pin(ctx, outside.GetId(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Pin(ctx, inside.GetId(), true); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for event, err := range scoped.Watch(ctx, nil, cursor) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%v %s", event.GetType(), event.GetArtifact().GetId()))
		if len(seen) == 2 {
			break
		}
	}
	want := []string{fmt.Sprintf("%v %s", artifactd.EventCreated, inside.GetId()), fmt.Sprintf("%v %s", artifactd.EventPinned, inside.GetId())}
	if !slices.Equal(seen, want) {
		t.Fatalf("scoped watch saw %v; want %v", seen, want)
	}
}

func TestRecordUsageDefaultsToTheScopesRun(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	dataset, err := client.SaveText(ctx, "rows", &artifactd.Spec{Kind: "dataset"})
	if err != nil {
		t.Fatal(err)
	}
	model, err := client.SaveText(ctx, "weights", &artifactd.Spec{Kind: "model", Inputs: []*artifactd.Input{{ArtifactId: dataset.GetId(), Role: "training-data"}}})
	if err != nil {
		t.Fatal(err)
	}
	run := uniqueRun(t)
	used, err := client.RecordUsage(ctx, model.GetId(), run, "evaluation-model")
	if err != nil || used.GetArtifactId() != model.GetId() || used.GetRunId() != run || used.GetRole() != "evaluation-model" || used.GetRecordedBy() == "" {
		t.Fatalf("RecordUsage: %v %v", used, err)
	}
	// One record per artifact, run and role: a repeat answers the first.
	repeat, err := client.RecordUsage(ctx, artifactd.URIScheme+model.GetId(), run, "evaluation-model")
	if err != nil || !repeat.GetRecordedAt().AsTime().Equal(used.GetRecordedAt().AsTime()) {
		t.Fatalf("repeated RecordUsage: %v %v", repeat, err)
	}
	evaluation := client.WithScope(&artifactd.Provenance{RunId: run + "-eval"})
	scopedUse, err := evaluation.RecordUsage(ctx, model.GetId(), "", "")
	if err != nil || scopedUse.GetRunId() != run+"-eval" {
		t.Fatalf("scoped RecordUsage: %v %v", scopedUse, err)
	}
	if other, err := evaluation.RecordUsage(ctx, model.GetId(), "other-"+run, ""); err != nil || other.GetRunId() != "other-"+run {
		t.Fatalf("RecordUsage naming its run: %v %v", other, err)
	}
	lineage, err := client.Lineage(ctx, model.GetId(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, usage := range lineage.GetUsages() {
		runs = append(runs, usage.GetRunId()+"/"+usage.GetRole())
	}
	if !sameSet(runs, []string{run + "/evaluation-model", run + "-eval/", "other-" + run + "/"}) {
		t.Fatalf("lineage usages %v", runs)
	}

	_, err = client.WithScope(&artifactd.Provenance{GraphId: "g"}).RecordUsage(ctx, model.GetId(), "", "")
	expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "give a run id, or use a client whose scope has one")
	_, err = client.RecordUsage(ctx, "not an id", run, "")
	expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "not an id")
	if _, err := client.Delete(ctx, dataset.GetId()); err != nil {
		t.Fatal(err)
	}
	_, err = client.RecordUsage(ctx, dataset.GetId(), "late", "")
	expectCode(t, err, connect.CodeFailedPrecondition, artifactd.ErrFailedPrecondition, "was deleted")
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// watchCursor is a cursor of the event log as it is now (from the test
// service): a watch resumed from it delivers every event recorded after
// this call returns, however late it opens.
func watchCursor(t *testing.T) string {
	t.Helper()
	var cursor string
	if err := json.Unmarshal(askHelper(t, map[string]any{"op": "eventCursor"}), &cursor); err != nil {
		t.Fatal(err)
	}
	return cursor
}
