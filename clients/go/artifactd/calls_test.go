package artifactd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

// expectCode fails unless err carries code (connect.CodeOf and errors.Is alike) and a message matching want.
func expectCode(t *testing.T, err error, code connect.Code, sentinel error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("succeeded; want %v", code)
	}
	if connect.CodeOf(err) != code || !errors.Is(err, sentinel) {
		t.Fatalf("answered %v (code %v); want %v", err, connect.CodeOf(err), code)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q does not say %q", err.Error(), want)
	}
}

func TestBadInputIsRefusedWithTheRightCodeAndAClearMessage(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)

	t.Run("a malformed reference, before any call", func(t *testing.T) {
		_, err := client.Get(ctx, "orders@v0")
		expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, `version "v0": give @v<number> or @<number>, from 1`)
		_, err = client.Open(ctx, "not an id")
		expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "neither an id nor names a version or alias")
	})

	t.Run("content shorter than its declared size", func(t *testing.T) {
		w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "short"}, artifactd.ExpectedSize(10))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		_, _ = w.Write([]byte("12345"))
		_, err = w.Commit()
		expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "10")
	})

	t.Run("a page size past the server's limit", func(t *testing.T) {
		for _, err := range client.List(ctx, nil, 5000) {
			expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "ARTIFACTD_MAX_PAGE_SIZE")
		}
	})

	t.Run("a lineage deeper than 32", func(t *testing.T) {
		saved, err := client.SaveText(ctx, "x", &artifactd.Spec{Kind: "note"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.Lineage(ctx, saved.GetId(), 99)
		expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "depth")
	})

	t.Run("a spec-less writer", func(t *testing.T) {
		_, err := client.OpenWriter(ctx, nil)
		expectCode(t, err, connect.CodeInvalidArgument, artifactd.ErrInvalidArgument, "spec is required")
	})

	t.Run("a token the server does not know", func(t *testing.T) {
		stranger := newClientAt(t, server.URL, "adt_not-a-token-of-this-server")
		_, err := stranger.SaveText(ctx, "x", &artifactd.Spec{Kind: "note"})
		if connect.CodeOf(err) != connect.CodeUnauthenticated || !errors.Is(err, artifactd.ErrUnauthenticated) {
			t.Fatalf("answered %v; want UNAUTHENTICATED", err)
		}
	})
}

func TestAnotherTenantsArtifactIsNotFound(t *testing.T) {
	alpha := newClient(t)
	beta := newClientAt(t, server.URL, server.Tokens["beta"])
	ctx := testContext(t)
	saved, err := alpha.UploadReader(ctx, bytes.NewReader(randomBytes(t, 100_000)), &artifactd.Spec{Kind: "private"})
	if err != nil {
		t.Fatal(err)
	}
	id := saved.GetArtifact().GetId()
	calls := map[string]func() error{
		"Get":    func() error { _, err := beta.Get(ctx, id); return err },
		"Open":   func() error { _, err := beta.Open(ctx, id); return err },
		"Delete": func() error { _, err := beta.Delete(ctx, id); return err },
		"Pin":    func() error { _, err := beta.Pin(ctx, id, true); return err },
		"DownloadToFile": func() error {
			_, err := beta.DownloadToFile(ctx, id, t.TempDir()+"/x")
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			expectCode(t, call(), connect.CodeNotFound, artifactd.ErrNotFound, id)
		})
	}
	if _, err := alpha.Get(ctx, id); err != nil {
		t.Fatalf("its own tenant cannot read it after the others tried: %v", err)
	}
}

func TestJSONAndTextAreInlineWhenSmallAndBlobsWhenLarge(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	type summary struct {
		Rows  int    `json:"rows"`
		Note  string `json:"note"`
		Items []int  `json:"items"`
	}
	small := summary{Rows: 1250, Note: "<a & b>"}
	saved, err := client.SaveJSON(ctx, small, &artifactd.Spec{Kind: "summary"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(saved.GetId(), "json_") || saved.GetStorage().String() != "STORAGE_INLINE" {
		t.Fatalf("small JSON saved as %s in %v; want json_… inline", saved.GetId(), saved.GetStorage())
	}
	var back summary
	if err := client.LoadJSON(ctx, artifactd.URIScheme+saved.GetId(), &back); err != nil || back.Rows != 1250 || back.Note != "<a & b>" {
		t.Fatalf("loaded %+v, %v", back, err)
	}
	large := summary{Items: make([]int, 200_000)} // 400 KB of JSON, past the 256 KiB inline limit
	savedLarge, err := client.SaveJSON(ctx, large, &artifactd.Spec{Kind: "summary"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(savedLarge.GetId(), "json_") || savedLarge.GetStorage().String() == "STORAGE_INLINE" || savedLarge.GetMimeType() != "application/json" {
		t.Fatalf("large JSON saved as %s in %v (%s); want a json_… blob", savedLarge.GetId(), savedLarge.GetStorage(), savedLarge.GetMimeType())
	}
	var backLarge summary
	if err := client.LoadJSON(ctx, savedLarge.GetId(), &backLarge); err != nil || len(backLarge.Items) != 200_000 {
		t.Fatalf("loaded %d items, %v", len(backLarge.Items), err)
	}
	text, err := client.SaveText(ctx, "# Orders\n1250 rows", &artifactd.Spec{Kind: "report", TypePrefix: "doc"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := client.LoadText(ctx, text.GetId()); err != nil || got != "# Orders\n1250 rows" || !strings.HasPrefix(text.GetId(), "doc_") {
		t.Fatalf("loaded %q (%s), %v", got, text.GetId(), err)
	}
}

func TestVersionedNamesAliasesAndReferences(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	name := fmt.Sprintf("thresholds-%d", time.Now().UnixNano())
	spec := &artifactd.Spec{Kind: "config", Name: name, Project: "fraud", Versioned: true}
	first, err := client.SaveJSON(ctx, map[string]float64{"block": 0.9}, spec)
	if err != nil {
		t.Fatal(err)
	}
	second, err := client.SaveJSON(ctx, map[string]float64{"block": 0.8}, spec)
	if err != nil {
		t.Fatal(err)
	}
	if second.GetVersion() != first.GetVersion()+1 {
		t.Fatalf("versions %d then %d", first.GetVersion(), second.GetVersion())
	}
	load := func(ref string) float64 {
		t.Helper()
		var value map[string]float64
		if err := client.LoadJSON(ctx, ref, &value); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		return value["block"]
	}
	if got := load("fraud/" + name + ":latest"); got != 0.8 {
		t.Fatalf(":latest read %v", got)
	}
	if got := load(fmt.Sprintf("artifact://fraud/%s@v%d", name, first.GetVersion())); got != 0.9 {
		t.Fatalf("@v1 read %v", got)
	}
	if _, err := client.SetAlias(ctx, fmt.Sprintf("fraud/%s@%d", name, first.GetVersion()), "production", "reviewed"); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "fraud/"+name+":production"); err != nil || got.GetId() != first.GetId() {
		t.Fatalf("the alias names %v, %v; want %s", got.GetId(), err, first.GetId())
	}
	_, err = client.Get(ctx, fmt.Sprintf("fraud/%s@v9", name))
	expectCode(t, err, connect.CodeNotFound, artifactd.ErrNotFound, "has no version 9")
}

func TestListSearchBestPinStatusDeleteAndLineage(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	run := uniqueRun(t)
	var ids []string
	for i, accuracy := range []float64{0.81, 0.93, 0.87, 0.90, 0.85} {
		artifact, err := client.SaveText(ctx, fmt.Sprintf("weights %d", i), &artifactd.Spec{
			Kind: "model", Name: fmt.Sprintf("classifier-%d", i), Metrics: map[string]float64{"accuracy": accuracy},
			Provenance: &artifactd.Provenance{RunId: run},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, artifact.GetId())
	}
	var pages, listed int
	for page, err := range client.List(ctx, &artifactd.Filter{Provenance: &artifactd.Provenance{RunId: run}}, 2) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		listed += len(page)
	}
	if pages != 3 || listed != 5 {
		t.Fatalf("listed %d artifacts in %d pages; want 5 in 3", listed, pages)
	}
	within := artifactd.Within(&artifactd.Filter{Provenance: &artifactd.Provenance{RunId: run}})
	best, err := client.Best(ctx, "model", "accuracy", within)
	if err != nil || best.GetId() != ids[1] {
		t.Fatalf("best is %v, %v; want %s", best.GetId(), err, ids[1])
	}
	worst, err := client.Top(ctx, "model", "accuracy", 2, within, artifactd.Minimize())
	if err != nil || len(worst) != 2 || worst[0].GetId() != ids[0] || worst[1].GetId() != ids[4] {
		t.Fatalf("the two lowest are %v, %v", worst, err)
	}
	none, err := client.Best(ctx, "model", "no-such-metric", within)
	if err != nil || none != nil {
		t.Fatalf("best by a metric nobody has answered %v, %v; want nil, nil", none, err)
	}
	found := 0
	for page, err := range client.Search(ctx, "classifier-3", &artifactd.Filter{Provenance: &artifactd.Provenance{RunId: run}}, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 0 && page[0].GetId() == ids[3] {
			found++
		}
	}
	if found != 1 {
		t.Fatal("search did not rank the exact name first")
	}
	if _, err := client.Pin(ctx, ids[1], true); err != nil {
		t.Fatal(err)
	}
	_, err = client.Delete(ctx, ids[1])
	expectCode(t, err, connect.CodeFailedPrecondition, artifactd.ErrFailedPrecondition, "pinned")
	if _, err := client.Pin(ctx, ids[1], false); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SetStatus(ctx, ids[1], artifactd.StatusReview); err != nil {
		t.Fatal(err)
	}
	approved, err := client.SetStatus(ctx, ids[1], artifactd.StatusApproved)
	if err != nil || approved.GetStatus() != artifactd.StatusApproved {
		t.Fatalf("approve: %v, %v", approved.GetStatus(), err)
	}
	_, err = client.SetStatus(ctx, ids[1], artifactd.StatusDraft)
	expectCode(t, err, connect.CodeFailedPrecondition, artifactd.ErrFailedPrecondition, "approved")
	deleted, err := client.Delete(ctx, ids[0])
	if err != nil || deleted.GetDeletedAt() == nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = client.LoadBytes(ctx, ids[0])
	expectCode(t, err, connect.CodeNotFound, artifactd.ErrNotFound, ids[0])

	report, err := client.SaveText(ctx, "report", &artifactd.Spec{Kind: "report", Inputs: []*artifactd.Input{{ArtifactId: ids[1], Role: "model"}}})
	if err != nil {
		t.Fatal(err)
	}
	lineage, err := client.Lineage(ctx, report.GetId(), 1)
	if err != nil || len(lineage.GetAncestors()) != 1 || lineage.GetAncestors()[0].GetId() != ids[1] {
		t.Fatalf("lineage %v, %v", lineage, err)
	}
}

func TestWatchResumesFromItsCursorAfterADroppedStream(t *testing.T) {
	proxy := startCuttingProxy(t, server.URL)
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"], artifactd.WithRetry(artifactd.RetryPolicy{MaxAttempts: 10, InitialDelay: 50 * time.Millisecond}))
	saver := newClient(t)
	ctx := testContext(t)
	run := uniqueRun(t)
	filter := &artifactd.Filter{Provenance: &artifactd.Provenance{RunId: run}}
	save := func(name string) string {
		artifact, err := saver.SaveText(ctx, name, &artifactd.Spec{Kind: "event", Name: name, Provenance: &artifactd.Provenance{RunId: run}})
		if err != nil {
			t.Fatal(err)
		}
		return artifact.GetId()
	}
	// Saved before the watch opens: a watch from now never reports it.
	firstID := save("first")
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	events := make(chan *artifactd.WatchEvent)
	failures := make(chan error, 1)
	go func() {
		for event, err := range client.Watch(watchCtx, filter, "") {
			if err != nil {
				failures <- err
				return
			}
			events <- event
		}
	}()
	// The next event not of a warm-up save.
	next := func() *artifactd.WatchEvent {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case event := <-events:
				if !strings.HasPrefix(event.GetArtifact().GetName(), "warm-up") {
					return event
				}
			case err := <-failures:
				t.Fatalf("the watch failed: %v", err)
			case <-deadline:
				t.Fatal("no event within 20 s")
			}
		}
	}
	// A watch from now reports what is saved once it is open: save until it reports something.
	for opened := false; !opened; {
		save("warm-up")
		select {
		case <-events:
			opened = true
		case err := <-failures:
			t.Fatalf("the watch failed: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	secondID := save("second")
	second := next()
	if second.GetArtifact().GetId() != secondID {
		t.Fatalf("first event is of %s; want %s (not %s, saved before the watch)", second.GetArtifact().GetId(), secondID, firstID)
	}
	proxy.CutNow()
	thirdID := save("third")
	if third := next(); third.GetArtifact().GetId() != thirdID {
		t.Fatalf("after the cut the watch delivered %s; want %s", third.GetArtifact().GetId(), thirdID)
	}
	if proxy.connections.Load() < 2 {
		t.Fatal("the watch never reconnected")
	}
	stopWatching()

	// A new watch from a kept cursor gets exactly what came after it.
	fourthID := save("fourth")
	for event, err := range client.Watch(ctx, filter, second.GetCursor()) {
		if err != nil {
			t.Fatal(err)
		}
		if event.GetArtifact().GetId() != thirdID {
			t.Fatalf("resumed after the second event, got %s first; want the third, %s", event.GetArtifact().GetId(), thirdID)
		}
		break
	}
	if fourthID == thirdID {
		t.Fatal("two saves answered one id")
	}
}

func TestWatchSaysWhenLiveAndMissesNothingWhenCutBeforeItsFirstEvent(t *testing.T) {
	proxy := startCuttingProxy(t, server.URL)
	saved := make(chan struct{}) // closed once the save made during the cut is stored
	retrying := make(chan struct{}, 1)
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"], artifactd.WithRetry(artifactd.RetryPolicy{
		MaxAttempts: 10, InitialDelay: 50 * time.Millisecond,
		// The watch's reconnection is held until the save is made: a watch that resumed "from now" would miss it.
		OnRetry: func(int, time.Duration, error) {
			select {
			case retrying <- struct{}{}:
			default:
			}
			<-saved
		},
	}))
	saver := newClient(t)
	ctx := testContext(t)
	run := uniqueRun(t)
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	events := make(chan *artifactd.WatchEvent, 4)
	live := make(chan string, 4)
	go func() {
		onLive := artifactd.OnLive(func(cursor string) { live <- cursor })
		for event, err := range client.Watch(watchCtx, &artifactd.Filter{Provenance: &artifactd.Provenance{RunId: run}}, "", onLive) {
			if err != nil {
				return
			}
			events <- event
		}
	}()
	within := func() <-chan time.Time { return time.After(20 * time.Second) }
	var firstLive string
	select {
	case firstLive = <-live:
	case <-within():
		t.Fatal("the watch never said it was live")
	}
	proxy.CutNow()
	select {
	case <-retrying:
	case <-within():
		t.Fatal("the watch did not notice the cut")
	}
	during, err := saver.SaveText(ctx, "during", &artifactd.Spec{Kind: "event", Provenance: &artifactd.Provenance{RunId: run}})
	close(saved)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case event := <-events:
		if event.GetType() != artifactd.EventCreated || event.GetArtifact().GetId() != during.GetId() {
			t.Fatalf("after the cut the watch delivered %v of %s; want the creation of %s", event.GetType(), event.GetArtifact().GetId(), during.GetId())
		}
	case <-within():
		t.Fatal("the save made during the cut never came: the watch resumed from now, not from where it went live")
	}
	select {
	case again := <-live:
		a, _ := strconv.ParseInt(again, 10, 64)
		f, _ := strconv.ParseInt(firstLive, 10, 64)
		if a < f {
			t.Fatalf("live again from %s, before where it first went live (%s)", again, firstLive)
		}
	case <-within():
		t.Fatal("the watch did not say it was live again after reconnecting")
	}
}
