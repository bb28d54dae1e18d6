// A folder saved as one directory artifact, restored elsewhere (by this SDK or the Node SDK alike).
package main

import (
	"context"
	"log"
	"os"
	"path/filepath"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

func main() {
	ctx := context.Background()
	client, err := artifactd.New(os.Getenv("ARTIFACTD_URL"), os.Getenv("ARTIFACTD_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	work, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)

	run := filepath.Join(work, "checkpoint")
	_ = os.MkdirAll(filepath.Join(run, "weights"), 0o755)
	_ = os.WriteFile(filepath.Join(run, "weights", "layer1.bin"), make([]byte, 4096), 0o644)
	_ = os.WriteFile(filepath.Join(run, "config.json"), []byte(`{"layers": 1}`), 0o644)

	// Identical files are stored once; content the server already has is not sent again.
	saved, err := client.SaveDir(ctx, run, &artifactd.Spec{Kind: "checkpoint", Provenance: &artifactd.Provenance{RunId: "run-42"}}, artifactd.DirOptions{})
	if err != nil {
		log.Fatal(err)
	}

	// The manifest is checked whole (no "..", absolute paths or links) before anything is written.
	target := filepath.Join(work, "restored")
	if _, err := client.RestoreDir(ctx, saved.GetId(), target, artifactd.DirOptions{Concurrency: 4}); err != nil {
		log.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(target, "config.json"))
	if err != nil || string(config) != `{"layers": 1}` {
		log.Fatalf("config.json: %q %v", config, err)
	}
}
