// A writer-style streaming save with metadata gathered while writing, then a verified read.
package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"os"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

func main() {
	ctx := context.Background()
	client, err := artifactd.New(os.Getenv("ARTIFACTD_URL"), os.Getenv("ARTIFACTD_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	w, err := client.OpenWriter(ctx, &artifactd.Spec{Kind: "model", Name: "resnet.pt", Provenance: &artifactd.Provenance{RunId: "run-42"}})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()                                                    // without Commit: aborted, nothing is recorded
	checkpoint := bytes.Repeat([]byte{7}, 3<<20)                       // stands in for real bytes
	if _, err := io.Copy(w, bytes.NewReader(checkpoint)); err != nil { // Write blocks for backpressure
		log.Fatal(err)
	}
	w.AddMetrics(map[string]float64{"accuracy": 0.93}).AddLabels(map[string]string{"stage": "candidate"})
	saved, err := w.Commit()
	if err != nil {
		log.Fatal(err)
	}

	r, err := client.Open(ctx, saved.GetArtifact().GetId()) // verified against the artifact's BLAKE3 as it is read
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r) // corrupt content would end in an error, not io.EOF
	if err != nil || n != 3<<20 || r.Artifact().GetMetrics()["accuracy"] != 0.93 {
		log.Fatalf("read %d bytes: %v", n, err)
	}
}
