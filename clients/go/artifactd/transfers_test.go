package artifactd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/zeebo/blake3"

	"github.com/artifactd/artifactd/clients/go/artifactd"
	artifactsv1 "github.com/artifactd/artifactd/clients/go/gen/artifacts/v1"
)

const miB = 1024 * 1024

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	return data
}

func blake3Hex(data []byte) string {
	sum := blake3.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// countRecorded is how many artifacts (deleted ones included) carry run.
func countRecorded(t *testing.T, client *artifactd.Client, run string) int {
	t.Helper()
	count := 0
	for page, err := range client.List(testContext(t), &artifactd.Filter{Provenance: &artifactd.Provenance{RunId: run}, IncludeDeleted: true}, 0) {
		if err != nil {
			t.Fatal(err)
		}
		count += len(page)
	}
	return count
}

func TestWriterCommitsContentAndTheMetadataGatheredWhileWriting(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	run := uniqueRun(t)
	data := randomBytes(t, 3*miB+17)
	w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "model", Name: "writer.bin", Provenance: &artifactd.Provenance{RunId: run}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Odd-sized writes: the writer regroups them into whole messages.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 100_003)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	w.AddMetrics(map[string]float64{"accuracy": 0.93}).AddLabels(map[string]string{"stage": "candidate"}).AddTags("go")
	response, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	artifact := response.GetArtifact()
	if artifact.GetSizeBytes() != int64(len(data)) || artifact.GetBlake3() != blake3Hex(data) {
		t.Fatalf("recorded %d bytes with BLAKE3 %s, sent %d with %s", artifact.GetSizeBytes(), artifact.GetBlake3(), len(data), blake3Hex(data))
	}
	if again, err := w.Commit(); err != nil || again.GetArtifact().GetId() != artifact.GetId() {
		t.Fatalf("a second Commit answered %v, %v; want the same artifact", again, err)
	}
	got, err := client.Get(ctx, artifact.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if got.GetMetrics()["accuracy"] != 0.93 || got.GetLabels()["stage"] != "candidate" || !strings.Contains(strings.Join(got.GetTags(), ","), "go") {
		t.Fatalf("metadata gathered while writing is missing: %v %v %v", got.GetMetrics(), got.GetLabels(), got.GetTags())
	}
	loaded, err := client.LoadBytes(ctx, artifact.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded, data) {
		t.Fatal("the content read back differs from what was written")
	}
}

func TestWriterClosedWithoutCommitRecordsNothing(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	run := uniqueRun(t)
	// Held (never sent) and streaming (the stream open on the server) writers alike.
	for _, size := range []int{1000, 5 * miB} {
		w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "aborted", Provenance: &artifactd.Provenance{RunId: run}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(randomBytes(t, size)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("more")); err == nil {
			t.Fatal("Write after Close succeeded")
		}
		if _, err := w.Commit(); err == nil {
			t.Fatal("Commit after Close succeeded")
		}
	}
	// Give the server time to have recorded anything it wrongly would.
	time.Sleep(300 * time.Millisecond)
	if n := countRecorded(t, client, run); n != 0 {
		t.Fatalf("%d artifacts were recorded by writers closed without Commit", n)
	}
}

// patternReader yields n pseudo-random bytes without holding them: the test's memory is the client's.
type patternReader struct {
	source *mathrand.ChaCha8
	left   int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	_, _ = r.source.Read(p)
	r.left -= int64(len(p))
	return len(p), nil
}

// heapPeak samples HeapInuse until stopped and answers the largest value seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var stats runtime.MemStats
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		for {
			runtime.ReadMemStats(&stats)
			if stats.HeapInuse > peak.Load() {
				peak.Store(stats.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-ticker.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

func TestHalfGiBUploadAndVerifiedDownloadInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("the 512 MiB transfer")
	}
	const size = 512 * miB
	const heapLimit = 64 * miB
	client := newClient(t)
	ctx := testContext(t)
	runtime.GC()
	stop := heapPeak()
	hasher := blake3.New()
	source := io.TeeReader(&patternReader{source: mathrand.NewChaCha8([32]byte{7}), left: size}, hasher)
	w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "dataset", Name: "half-gib.bin"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	started := time.Now()
	if _, err := io.Copy(w, source); err != nil {
		t.Fatal(err)
	}
	response, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	uploadTime := time.Since(started)
	uploadPeak := stop()
	if want := hex.EncodeToString(hasher.Sum(nil)); response.GetArtifact().GetBlake3() != want || response.GetArtifact().GetSizeBytes() != size {
		t.Fatalf("recorded %d bytes with BLAKE3 %s; sent %d with %s", response.GetArtifact().GetSizeBytes(), response.GetArtifact().GetBlake3(), size, want)
	}

	runtime.GC()
	stop = heapPeak()
	started = time.Now()
	// Through the service (relayed), the path every server offers.
	reader, err := client.Open(ctx, response.GetArtifact().GetId(), artifactd.Direct(artifactd.DirectNever))
	if err != nil {
		t.Fatal(err)
	}
	read, err := io.Copy(io.Discard, reader)
	_ = reader.Close()
	downloadTime := time.Since(started)
	downloadPeak := stop()
	if err != nil || read != size {
		t.Fatalf("read %d bytes, then %v; want %d verified bytes", read, err, size)
	}
	t.Logf("512 MiB: upload %.1fs (heap in use peak %.1f MiB), download %.1fs (peak %.1f MiB)",
		uploadTime.Seconds(), float64(uploadPeak)/miB, downloadTime.Seconds(), float64(downloadPeak)/miB)
	if uploadPeak > heapLimit || downloadPeak > heapLimit {
		t.Fatalf("heap in use peaked at %.1f MiB (upload) and %.1f MiB (download); the bound is %d MiB", float64(uploadPeak)/miB, float64(downloadPeak)/miB, heapLimit/miB)
	}
}

func TestCorruptContentIsAnErrorInsteadOfEOF(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	data := randomBytes(t, 3*miB)
	response, err := client.UploadReader(ctx, bytes.NewReader(data), &artifactd.Spec{Kind: "corrupt-me"})
	if err != nil {
		t.Fatal(err)
	}
	id := response.GetArtifact().GetId()
	// Same length, last byte flipped, in MinIO itself: neither size nor the store can tell.
	askHelper(t, map[string]any{"op": "corrupt", "tenant": "alpha", "blake3": response.GetArtifact().GetBlake3()})

	t.Run("straight from the store, the client's own check", func(t *testing.T) {
		reader, err := client.Open(ctx, id, artifactd.Direct(artifactd.DirectAlways))
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		read, err := io.Copy(io.Discard, reader)
		var integrity *artifactd.IntegrityError
		if !errors.As(err, &integrity) || !errors.Is(err, artifactd.ErrIntegrity) || connect.CodeOf(err) != connect.CodeDataLoss {
			t.Fatalf("reading corrupt content ended with %v (code %v); want an IntegrityError with code DATA_LOSS", err, connect.CodeOf(err))
		}
		if read != int64(len(data)) {
			t.Fatalf("read %d bytes before the error; the whole content (%d) passes before its digest can be checked", read, len(data))
		}
	})

	t.Run("downloaded to a file: nothing left behind", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "copy.bin")
		_, err := client.DownloadToFile(ctx, id, target, artifactd.Direct(artifactd.DirectAlways))
		if !errors.Is(err, artifactd.ErrIntegrity) {
			t.Fatalf("DownloadToFile of corrupt content answered %v; want an integrity error", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("a failed download left %v behind", entries)
		}
	})

	t.Run("through the service, told the client checks: found by the client, then marked by the service for everyone", func(t *testing.T) {
		reader, err := client.Open(ctx, id, artifactd.Direct(artifactd.DirectNever))
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		read, err := io.Copy(io.Discard, reader)
		if !errors.Is(err, artifactd.ErrIntegrity) || read != int64(len(data)) {
			t.Fatalf("a relayed read the client verifies ended with %v after %d bytes; want the client's integrity error after all %d", err, read, len(data))
		}
		// The reader let the service check it once more: the blob is marked, so the next read fails at once.
		stream, err := client.RPC().Download(ctx, connect.NewRequest(&artifactsv1.DownloadRequest{Id: id}))
		if err != nil {
			t.Fatal(err)
		}
		for stream.Receive() {
			if stream.Msg().GetChunk() != nil {
				t.Fatal("the service sent content of a blob it should have marked corrupt")
			}
		}
		if connect.CodeOf(stream.Err()) != connect.CodeDataLoss || !strings.Contains(stream.Err().Error(), "is corrupt") {
			t.Fatalf("reading a marked blob answered %v; want DATA_LOSS saying it is corrupt", stream.Err())
		}
		_, err = client.LoadBytes(ctx, id)
		if connect.CodeOf(err) != connect.CodeDataLoss || !errors.Is(err, artifactd.ErrDataLoss) {
			t.Fatalf("loading corrupt content answered %v; want DATA_LOSS", err)
		}
	})
}

func TestUploadFileResumesAfterACutConnectionFromTheLastStoredPart(t *testing.T) {
	proxy := startCuttingProxy(t, server.URL)
	var retries atomic.Int32
	var sentBeforeLastRetry atomic.Int64
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"], artifactd.WithContentFirst(false),
		artifactd.WithRetry(artifactd.RetryPolicy{MaxAttempts: 8, InitialDelay: 50 * time.Millisecond, OnRetry: func(int, time.Duration, error) {
			retries.Add(1)
			sentBeforeLastRetry.Store(proxy.up.Load())
		}}))
	ctx := testContext(t)
	data := randomBytes(t, 40*miB)
	path := filepath.Join(t.TempDir(), "shard.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cut := proxy.CutAfter(true, 20*miB)
	before := proxy.up.Load()
	response, err := client.UploadFile(ctx, path, &artifactd.Spec{Kind: "dataset", Name: "shard.bin"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-cut:
	default:
		t.Fatal("the proxy never cut the upload")
	}
	if response.GetArtifact().GetBlake3() != blake3Hex(data) || response.GetArtifact().GetSizeBytes() != int64(len(data)) {
		t.Fatal("the resumed upload recorded other content")
	}
	if retries.Load() == 0 || proxy.connections.Load() < 2 {
		t.Fatalf("%d retries over %d connections: the cut was not resumed", retries.Load(), proxy.connections.Load())
	}
	// The attempt that succeeded went on from a stored 8 MiB part: it sent less than the whole file.
	// (Attempts in between may send some bytes before the server refuses them: the session is still
	// held by the cut stream until the server notices it is gone, and answers ABORTED, retried.)
	if last := proxy.up.Load() - sentBeforeLastRetry.Load(); last > int64(len(data))-4*miB {
		t.Fatalf("the last attempt sent %d MiB of a %d MiB file: it did not resume from a stored part", last/miB, len(data)/miB)
	}
	t.Logf("%d retries; %d MiB sent up in all for %d MiB", retries.Load(), (proxy.up.Load()-before)/miB, len(data)/miB)
}

func TestDownloadResumesAfterACutConnectionFromTheLastByte(t *testing.T) {
	proxy := startCuttingProxy(t, server.URL)
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"],
		artifactd.WithRetry(artifactd.RetryPolicy{MaxAttempts: 8, InitialDelay: 50 * time.Millisecond}))
	ctx := testContext(t)
	data := randomBytes(t, 24*miB)
	response, err := client.UploadReader(ctx, bytes.NewReader(data), &artifactd.Spec{Kind: "dataset"})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "copy.bin")
	cut := proxy.CutAfter(false, 8*miB)
	before := proxy.down.Load()
	if _, err := client.DownloadToFile(ctx, response.GetArtifact().GetId(), target, artifactd.Direct(artifactd.DirectNever)); err != nil {
		t.Fatal(err)
	}
	<-cut
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got, data) {
		t.Fatal("the resumed download differs from the content")
	}
	if received := proxy.down.Load() - before; received > int64(len(data))+4*miB {
		t.Fatalf("received %d MiB for %d MiB: the download started over", received/miB, len(data)/miB)
	}
}

func TestDeadlinesReachTheServer(t *testing.T) {
	client := newClient(t, artifactd.WithRetry(artifactd.RetryPolicy{MaxAttempts: 1}))
	run := uniqueRun(t)

	t.Run("a unary call past its deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
		defer cancel()
		time.Sleep(time.Millisecond)
		_, err := client.Get(ctx, "art_00000000000000000000000000")
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded || !errors.Is(err, artifactd.ErrDeadlineExceeded) {
			t.Fatalf("answered %v; want DEADLINE_EXCEEDED", err)
		}
	})

	t.Run("an upload whose deadline passes mid-stream records nothing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "late", Provenance: &artifactd.Provenance{RunId: run}})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Write(randomBytes(t, 2*miB)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		_, err = w.Commit()
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
			t.Fatalf("Commit past the deadline answered %v; want DEADLINE_EXCEEDED", err)
		}
		time.Sleep(300 * time.Millisecond)
		if n := countRecorded(t, client, run); n != 0 {
			t.Fatalf("%d artifacts recorded past their deadline", n)
		}
	})

	t.Run("a cancelled download", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		response, err := client.UploadReader(ctx, bytes.NewReader(randomBytes(t, 4*miB)), &artifactd.Spec{Kind: "cancel-me"})
		if err != nil {
			t.Fatal(err)
		}
		reader, err := client.Open(ctx, response.GetArtifact().GetId())
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		if _, err := reader.Read(make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		cancel()
		_, err = io.Copy(io.Discard, reader)
		if connect.CodeOf(err) != connect.CodeCanceled {
			t.Fatalf("a download whose context was cancelled answered %v; want CANCELED", err)
		}
	})
}

func TestRangesReadTheBytesAskedFor(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	data := randomBytes(t, 2*miB)
	response, err := client.UploadReader(ctx, bytes.NewReader(data), &artifactd.Spec{Kind: "ranged"})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []artifactd.DirectDownloadMode{artifactd.DirectNever, artifactd.DirectAlways} {
		for _, r := range []struct{ offset, length int64 }{{0, 10}, {miB + 3, 4096}, {2*miB - 5, -1}, {123, 0}} {
			reader, err := client.Open(ctx, response.GetArtifact().GetId(), artifactd.Range(r.offset, r.length), artifactd.Direct(mode))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(reader)
			_ = reader.Close()
			end := int64(len(data))
			if r.length >= 0 {
				end = r.offset + r.length
			}
			if err != nil || !bytes.Equal(got, data[r.offset:end]) {
				t.Fatalf("range %d+%d (mode %d): %d bytes, %v; want the %d asked for", r.offset, r.length, mode, len(got), err, end-r.offset)
			}
		}
	}
	_, err = client.Open(ctx, response.GetArtifact().GetId(), artifactd.Range(3*miB, 1), artifactd.Direct(artifactd.DirectNever))
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("an offset past the end answered %v; want OUT_OF_RANGE", err)
	}
}

func TestUploadFileSendsNoBytesTheServerAlreadyHas(t *testing.T) {
	proxy := startCuttingProxy(t, server.URL)
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"])
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "twice.bin")
	if err := os.WriteFile(path, randomBytes(t, 4*miB), 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := client.UploadFile(ctx, path, &artifactd.Spec{Kind: "dataset", Name: "first"})
	if err != nil || first.GetDeduplicated() {
		t.Fatalf("first upload: %v (deduplicated %v)", err, first.GetDeduplicated())
	}
	before := proxy.up.Load()
	second, err := client.UploadFile(ctx, path, &artifactd.Spec{Kind: "dataset", Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if !second.GetDeduplicated() || second.GetArtifact().GetId() == first.GetArtifact().GetId() || second.GetArtifact().GetBlake3() != first.GetArtifact().GetBlake3() {
		t.Fatalf("second upload: a new artifact of the same content recorded by digest expected, got %v", second)
	}
	if sent := proxy.up.Load() - before; sent > 64*1024 {
		t.Fatalf("sent %d bytes up for content the server had", sent)
	}
}

func TestDownloadsComeStraightFromTheStoreWhereTheServerOffersIt(t *testing.T) {
	proxy := startCuttingProxy(t, server.URL)
	client := newClientAt(t, proxy.URL, server.Tokens["alpha"])
	ctx := testContext(t)
	data := randomBytes(t, 4*miB)
	response, err := client.UploadReader(ctx, bytes.NewReader(data), &artifactd.Spec{Kind: "direct"})
	if err != nil {
		t.Fatal(err)
	}
	throughService := func(options ...artifactd.OpenOption) int64 {
		t.Helper()
		before := proxy.down.Load()
		reader, err := client.Open(ctx, response.GetArtifact().GetId(), options...)
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		if got, err := io.ReadAll(reader); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
		return proxy.down.Load() - before
	}
	// The test service offers direct links (to MinIO, not through this proxy): the content bypasses the service.
	if relayed := throughService(); relayed > miB {
		t.Fatalf("%d bytes came through the service; the content should have come from the store", relayed)
	}
	if relayed := throughService(artifactd.Direct(artifactd.DirectNever)); relayed < int64(len(data)) {
		t.Fatalf("only %d bytes came through the service with direct downloads off", relayed)
	}
}
