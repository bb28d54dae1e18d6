package artifactd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

// The transient-failure rule, code by code, as clients/api/src/transient-failure.ts states it.
func TestIsTransientFollowsTheNodeRule(t *testing.T) {
	quota := connect.NewError(connect.CodeResourceExhausted, errors.New("too many calls per second"))
	quota.Meta().Set("retry-after-ms", "250")
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"UNAVAILABLE", connect.NewError(connect.CodeUnavailable, errors.New("draining")), true},
		{"ABORTED", connect.NewError(connect.CodeAborted, errors.New("session held")), true},
		{"RESOURCE_EXHAUSTED with retry-after-ms", quota, true},
		{"RESOURCE_EXHAUSTED without", connect.NewError(connect.CodeResourceExhausted, errors.New("stored bytes quota")), false},
		{"INTERNAL from a reset stream", connect.NewError(connect.CodeInternal, errors.New("stream error: stream ID 3; INTERNAL_ERROR")), true},
		{"INTERNAL answered by the server", connect.NewError(connect.CodeInternal, errors.New("a bug")), false},
		{"UNKNOWN from a lost connection", connect.NewError(connect.CodeUnknown, errors.New("http2: client connection lost")), true},
		{"CANCELED by the caller", connect.NewError(connect.CodeCanceled, context.Canceled), false},
		{"DEADLINE_EXCEEDED", connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline")), false},
		{"INVALID_ARGUMENT", connect.NewError(connect.CodeInvalidArgument, errors.New("bad")), false},
		{"NOT_FOUND", connect.NewError(connect.CodeNotFound, errors.New("gone")), false},
		{"DATA_LOSS", connect.NewError(connect.CodeDataLoss, errors.New("corrupt")), false},
		{"a store connection reset", fmt.Errorf("read tcp: %w", errors.New("connection reset by peer")), true},
		{"the caller's context", context.Canceled, false},
	}
	for _, c := range cases {
		if got := artifactd.IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%s) = %v; want %v", c.name, got, c.want)
		}
	}
}

// Reads are retried up to MaxAttempts; SaveInline, which could record twice, is not (the Node SDK's split).
func TestOnlyCallsSafeToRepeatAreRetried(t *testing.T) {
	retries := 0
	// Nothing listens there: every call fails UNAVAILABLE (connection refused).
	client, err := artifactd.New("http://127.0.0.1:9", "adt_unused", artifactd.WithRetry(artifactd.RetryPolicy{
		MaxAttempts: 3, InitialDelay: time.Millisecond, OnRetry: func(int, time.Duration, error) { retries++ },
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = client.Get(t.Context(), "art_00000000000000000000000000")
	if connect.CodeOf(err) != connect.CodeUnavailable || retries != 2 {
		t.Fatalf("Get answered %v after %d retries; want UNAVAILABLE after 2", err, retries)
	}
	retries = 0
	_, err = client.SaveText(t.Context(), "once", &artifactd.Spec{Kind: "note"})
	if connect.CodeOf(err) != connect.CodeUnavailable || retries != 0 {
		t.Fatalf("SaveText answered %v after %d retries; want UNAVAILABLE, never retried", err, retries)
	}
}

func TestParseReference(t *testing.T) {
	valid := map[string]artifactd.Reference{
		"art_01jf3k8z9q4v6w2x7y5t0r1s3m":            {ID: "art_01jf3k8z9q4v6w2x7y5t0r1s3m"},
		"artifact://img_01jf3k8z9q4v6w2x7y5t0r1s3m": {ID: "img_01jf3k8z9q4v6w2x7y5t0r1s3m"},
		"orders:latest":                             {Name: "orders", Alias: "latest"},
		"team/orders:production":                    {Project: "team", Name: "orders", Alias: "production"},
		"orders@v3":                                 {Name: "orders", Version: 3},
		"artifact://team/orders@3":                  {Project: "team", Name: "orders", Version: 3},
	}
	for text, want := range valid {
		got, err := artifactd.ParseReference(text)
		if err != nil || got != want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", text, got, err, want)
		}
	}
	invalid := map[string]string{
		"":               "it is empty",
		"orders":         "neither an id nor names a version or alias",
		"orders@v0":      `version "v0"`,
		"orders:v2":      "names a version, not an alias",
		"orders:Prod":    `alias "Prod"`,
		"-team/orders:a": `project "-team"`,
		"/orders:latest": `project ""`,
	}
	for text, says := range invalid {
		_, err := artifactd.ParseReference(text)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !contains(err, says) {
			t.Errorf("ParseReference(%q) = %v; want INVALID_ARGUMENT saying %q", text, err, says)
		}
	}
}

func contains(err error, text string) bool {
	return err != nil && strings.Contains(err.Error(), text)
}

// The manifest is written as JSON.stringify writes it, whichever characters the paths hold.
func TestManifestIsWrittenAsTheNodeSDKWritesIt(t *testing.T) {
	manifest := &artifactd.Manifest{Entries: []artifactd.ManifestEntry{
		{Path: "z\u2028\b\f\x01\"\\<&>.txt", Type: "file", Size: 3, Blake3: "ab", ArtifactID: "fil_x", Executable: true},
		{Path: "\U0001F600", Type: "dir"},
		{Path: "\uFF5E", Type: "dir"},
		{Path: "A", Type: "dir"},
	}}
	// JSON.stringify(...) of the same entries, sorted by UTF-16 code units (U+1F600 is D83D DE00, before U+FF5E).
	want := `{"format":"artifactd.directory/v1","entries":[{"path":"A","type":"dir"},` +
		`{"path":"z` + "\u2028" + `\b\f\u0001\"\\<&>.txt","type":"file","size":3,"blake3":"ab","artifactId":"fil_x","executable":true},` +
		`{"path":"` + "\U0001F600" + `","type":"dir"},{"path":"` + "\uFF5E" + `","type":"dir"}]}`
	if got := string(manifest.Marshal()); got != want {
		t.Fatalf("wrote\n%s\nwant\n%s", got, want)
	}
}
