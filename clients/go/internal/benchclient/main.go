// Command benchclient drives the Go client for `npm run bench`
// (test/bench/go-client-cases.ts): a long-lived process, so the bench reads
// its CPU time from /proc across each transfer as it does for the service
// and MinIO. It takes one JSON request a line on stdin and answers each
// with one JSON line on stdout:
//
//	{"op":"upload","mib":N,"salt":K}           a writer fed N MiB (io.Copy), size declared → {"bytes","id"}
//	{"op":"download","id":"…","direct":false}  Open, read to the end (BLAKE3-verified) → {"bytes"}
//
// Content is windows into 17 MiB of random bytes, as the Node cases send
// (test/bench/transfer-cases.ts: chunks), so generating it costs nothing.
//
//	benchclient <service URL> <token>
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

const miB = 1 << 20

type request struct {
	Op     string `json:"op"`
	MiB    int    `json:"mib"`
	Salt   int    `json:"salt"`
	ID     string `json:"id"`
	Direct bool   `json:"direct"`
}

type answer struct {
	Bytes int64  `json:"bytes,omitempty"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: benchclient <service URL> <token>")
		os.Exit(2)
	}
	client, err := artifactd.New(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pool := make([]byte, 17*miB)
	_, _ = rand.Read(pool)
	lines := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for lines.Scan() {
		var r request
		if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
			_ = out.Encode(answer{Error: err.Error()})
			continue
		}
		result, err := serve(context.Background(), client, pool, r)
		if err != nil {
			result = answer{Error: err.Error()}
		}
		_ = out.Encode(result)
	}
}

func serve(ctx context.Context, client *artifactd.Client, pool []byte, r request) (answer, error) {
	switch r.Op {
	case "upload":
		w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "bench", Name: fmt.Sprintf("go-upload-%d.bin", r.Salt)}, artifactd.ExpectedSize(int64(r.MiB)*miB))
		if err != nil {
			return answer{}, err
		}
		defer w.Close()
		if _, err := io.Copy(w, &windows{pool: pool, left: r.MiB, salt: r.Salt}); err != nil {
			return answer{}, err
		}
		response, err := w.Commit()
		if err != nil {
			return answer{}, err
		}
		return answer{Bytes: response.GetArtifact().GetSizeBytes(), ID: response.GetArtifact().GetId()}, nil
	case "download":
		mode := artifactd.DirectNever
		if r.Direct {
			mode = artifactd.DirectAlways
		}
		reader, err := client.Open(ctx, r.ID, artifactd.Direct(mode))
		if err != nil {
			return answer{}, err
		}
		defer reader.Close()
		n, err := io.Copy(io.Discard, reader)
		return answer{Bytes: n}, err
	}
	return answer{}, fmt.Errorf("unknown op %q", r.Op)
}

// windows reads MiB-sized windows of the pool, chosen as the Node cases choose them.
type windows struct {
	pool    []byte
	left    int
	salt    int
	i       int
	current []byte
}

func (w *windows) Read(p []byte) (int, error) {
	if len(w.current) == 0 {
		if w.left == 0 {
			return 0, io.EOF
		}
		at := ((w.i*7919 + w.salt*104729) % 1024) * 16384
		w.current = w.pool[at : at+miB]
		w.i++
		w.left--
	}
	n := copy(p, w.current)
	w.current = w.current[n:]
	return n, nil
}
