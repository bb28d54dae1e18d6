package artifactd_test

import (
	"encoding/hex"
	"io"
	mathrand "math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/zeebo/blake3"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

func TestResumableWriterContinuesASourceThatCannotBeReadAgainAfterACut(t *testing.T) {
	const size = 40 * miB
	proxy := startCuttingProxy(t, server.URL)
	var retries atomic.Int32
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"],
		artifactd.WithRetry(artifactd.RetryPolicy{MaxAttempts: 8, InitialDelay: 50 * time.Millisecond, OnRetry: func(int, time.Duration, error) { retries.Add(1) }}))
	ctx := testContext(t)
	run := uniqueRun(t)
	hasher := blake3.New()
	// A generator: what it yielded once it cannot yield again.
	source := io.TeeReader(&patternReader{source: mathrand.NewChaCha8([32]byte{42}), left: size}, hasher)
	runtime.GC()
	var baseline runtime.MemStats
	runtime.ReadMemStats(&baseline)
	stop := heapPeak()
	var progress int64
	w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "dataset", Name: "stdin.bin", Provenance: &artifactd.Provenance{RunId: run}},
		artifactd.Resumable(), artifactd.OnProgress(func(bytes int64) { progress = bytes }))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cut := proxy.CutAfter(true, 20*miB)
	before := proxy.up.Load()
	if _, err := io.Copy(w, source); err != nil {
		t.Fatal(err)
	}
	w.AddLabels(map[string]string{"source": "generator"})
	response, err := w.Commit()
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-cut:
	default:
		t.Fatal("the proxy never cut the upload")
	}
	artifact := response.GetArtifact()
	if want := hex.EncodeToString(hasher.Sum(nil)); artifact.GetBlake3() != want || artifact.GetSizeBytes() != size {
		t.Fatalf("recorded %d bytes with BLAKE3 %s; wrote %d with %s", artifact.GetSizeBytes(), artifact.GetBlake3(), size, want)
	}
	if artifact.GetLabels()["source"] != "generator" || artifact.GetProvenance().GetRunId() != run || progress != size || w.Written() != size {
		t.Fatalf("labels %v, provenance %v, progress %d, written %d", artifact.GetLabels(), artifact.GetProvenance(), progress, w.Written())
	}
	if retries.Load() == 0 || proxy.connections.Load() < 2 {
		t.Fatalf("%d retries over %d connections: the cut was not resumed", retries.Load(), proxy.connections.Load())
	}
	sent := proxy.up.Load() - before
	// Resumed from a stored part: what was sent again is at most the unstored parts, not the whole content.
	if sent > size+2*8*miB+4*miB {
		t.Fatalf("sent %d MiB for %d MiB: more than the unstored parts again", sent/miB, size/miB)
	}
	// What the writer holds: the parts not yet stored (two at most), besides the transport's buffers.
	grown := int64(peak) - int64(baseline.HeapInuse)
	t.Logf("%d retries; %.1f MiB sent up for %d MiB; heap in use grew by at most %.1f MiB", retries.Load(), float64(sent)/miB, size/miB, float64(grown)/miB)
	if grown > 28*miB {
		t.Fatalf("heap in use grew by %.1f MiB while writing; the writer holds at most 16 MiB", float64(grown)/miB)
	}
}

func TestResumableWriterClosedWithoutCommitRecordsNothing(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	run := uniqueRun(t)
	w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "dataset", Provenance: &artifactd.Provenance{RunId: run}}, artifactd.Resumable())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, &patternReader{source: mathrand.NewChaCha8([32]byte{1}), left: 9 * miB}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Fatal("a closed writer took more bytes")
	}
	if n := countRecorded(t, client, run); n != 0 {
		t.Fatalf("%d artifacts recorded by an aborted writer", n)
	}
	// A declared size the content does not reach: refused at commit, nothing recorded.
	short, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "dataset", Provenance: &artifactd.Provenance{RunId: run}}, artifactd.Resumable(), artifactd.ExpectedSize(100))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = short.Write([]byte("ten bytes!"))
	_, err = short.Commit()
	if code := connect.CodeOf(err); code != connect.CodeInvalidArgument && code != connect.CodeFailedPrecondition {
		t.Fatalf("a short content committed as %v; want a refusal", err)
	}
	if n := countRecorded(t, client, run); n != 0 {
		t.Fatalf("%d artifacts recorded by a refused writer", n)
	}
}
