// Large files: progress, a deadline, and transfers that survive a dropped connection.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

func main() {
	client, err := artifactd.New(os.Getenv("ARTIFACTD_URL"), os.Getenv("ARTIFACTD_TOKEN"),
		artifactd.WithRetry(artifactd.RetryPolicy{MaxAttempts: 8, InitialDelay: 200 * time.Millisecond, MaxDelay: 10 * time.Second}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // give up after ten minutes
	defer cancel()

	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "shard-0001.bin")
	content := make([]byte, 20<<20)
	_, _ = rand.Read(content)
	if err := os.WriteFile(file, content, 0o600); err != nil {
		log.Fatal(err)
	}

	// 16 MiB and more go through a resumable upload session: after a drop it continues from the last stored part.
	var sent int64
	uploaded, err := client.UploadFile(ctx, file, &artifactd.Spec{Kind: "dataset", Name: "shard-0001.bin"},
		artifactd.OnProgress(func(bytes int64) { sent = bytes }))
	if err != nil {
		log.Fatal(err)
	}
	if sent != 20<<20 && !uploaded.GetDeduplicated() {
		log.Fatalf("progress reported %d bytes", sent)
	}

	// Downloads resume from the last byte received and are verified before the file is renamed into place.
	copyPath := filepath.Join(dir, "copy.bin")
	if _, err := client.DownloadToFile(ctx, uploaded.GetArtifact().GetId(), copyPath); err != nil {
		log.Fatal(err)
	}
	if info, err := os.Stat(copyPath); err != nil || info.Size() != 20<<20 {
		log.Fatalf("copy: %v", err)
	}

	// Failures carry the server's gRPC code: errors.Is with the Err… values, or connect.CodeOf.
	if _, err := client.Get(ctx, "shards@v999"); !errors.Is(err, artifactd.ErrNotFound) {
		log.Fatalf("want NOT_FOUND, got %v", err)
	}
}
