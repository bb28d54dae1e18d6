package artifactd_test

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"connectrpc.com/connect"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

// otherService starts another service over the test service's database and
// bucket (the same tokens and artifacts) with other direct-download
// settings: "none" or "closed" (see serve-for-client-tests.ts).
func otherService(t *testing.T, direct string) string {
	t.Helper()
	var url string
	if err := json.Unmarshal(askHelper(t, map[string]any{"op": "startService", "direct": direct}), &url); err != nil {
		t.Fatal(err)
	}
	return url
}

// relayedRead reads an artifact whole through a client of the proxy and
// answers how many bytes came through the service; the read must verify.
func relayedRead(t *testing.T, client *artifactd.Client, proxy *cuttingProxy, id string, want []byte, options ...artifactd.OpenOption) int64 {
	t.Helper()
	before := proxy.down.Load()
	reader, err := client.Open(testContext(t), id, options...)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if got, err := io.ReadAll(reader); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, then %v; want %d verified bytes", len(got), err, len(want))
	}
	return proxy.down.Load() - before
}

func TestDownloadsFallBackToTheServiceWhereDirectLinksFail(t *testing.T) {
	ctx := testContext(t)
	data := randomBytes(t, 3*miB)
	saved, err := newClient(t).UploadReader(ctx, bytes.NewReader(data), &artifactd.Spec{Kind: "direct-fallback"})
	if err != nil {
		t.Fatal(err)
	}
	id := saved.GetArtifact().GetId()

	t.Run("a server that offers no direct links: relayed every time", func(t *testing.T) {
		proxy := startCuttingProxy(t, otherService(t, "none"))
		client := newClientAt(t, proxy.URL, server.Tokens["alpha"])
		for i := range 2 {
			if relayed := relayedRead(t, client, proxy, id, data); relayed < int64(len(data)) {
				t.Fatalf("download %d: only %d bytes came through the service, which offers no direct links", i+1, relayed)
			}
		}
		forced := newClientAt(t, proxy.URL, server.Tokens["alpha"], artifactd.WithDirectDownloads(artifactd.DirectAlways))
		_, err := forced.Open(ctx, id)
		expectCode(t, err, connect.CodeFailedPrecondition, artifactd.ErrFailedPrecondition, "")
	})

	t.Run("a store out of the client's reach: relayed, and the download still verifies", func(t *testing.T) {
		proxy := startCuttingProxy(t, otherService(t, "closed"))
		client := newClientAt(t, proxy.URL, server.Tokens["alpha"])
		if relayed := relayedRead(t, client, proxy, id, data); relayed < int64(len(data)) {
			t.Fatalf("only %d bytes came through the service; the store is out of reach", relayed)
		}
		// Remembered: the next download goes through the service at once.
		if relayed := relayedRead(t, client, proxy, id, data[miB:2*miB], artifactd.Range(miB, miB)); relayed < miB {
			t.Fatalf("a range: only %d bytes came through the service", relayed)
		}
		forced := newClientAt(t, proxy.URL, server.Tokens["alpha"], artifactd.WithDirectDownloads(artifactd.DirectAlways))
		reader, err := forced.Open(ctx, id)
		if err == nil {
			_, err = io.ReadAll(reader)
			_ = reader.Close()
		}
		expectCode(t, err, connect.CodeUnavailable, artifactd.ErrUnavailable, "")
	})
}
