// Small results saved inline, versions of a name, and references instead of ids.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

type profile struct {
	Rows  int `json:"rows"`
	Nulls int `json:"nulls"`
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the deadline reaches the server
	defer cancel()
	client, err := artifactd.New(os.Getenv("ARTIFACTD_URL"), os.Getenv("ARTIFACTD_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	summary, err := client.SaveJSON(ctx, profile{Rows: 1250, Nulls: 3}, &artifactd.Spec{
		Kind: "summary", Name: "profile.json", Provenance: &artifactd.Provenance{RunId: "run-42", NodeId: "profile"},
	})
	if err != nil {
		log.Fatal(err)
	}
	var back profile
	if err := client.LoadJSON(ctx, artifactd.URIScheme+summary.GetId(), &back); err != nil || back.Rows != 1250 {
		log.Fatalf("loaded %+v: %v", back, err)
	}

	// Each save of a versioned name is its next version; references name them.
	spec := &artifactd.Spec{Kind: "config", Name: "thresholds", Project: "fraud", Versioned: true}
	first, err := client.SaveJSON(ctx, map[string]float64{"block": 0.9}, spec)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.SaveText(ctx, `{"block": 0.8}`, spec); err != nil {
		log.Fatal(err)
	}
	if _, err := client.SetAlias(ctx, fmt.Sprintf("fraud/thresholds@v%d", first.GetVersion()), "production", "reviewed"); err != nil {
		log.Fatal(err)
	}
	var production map[string]float64
	if err := client.LoadJSON(ctx, "artifact://fraud/thresholds:production", &production); err != nil || production["block"] != 0.9 {
		log.Fatalf("production: %v %v", production, err)
	}
	latest, err := client.LoadText(ctx, "fraud/thresholds:latest")
	if err != nil || latest != `{"block": 0.8}` {
		log.Fatalf("latest: %q %v", latest, err)
	}
}
