// Pages of a filtered list, the best model by a metric, and a watch of changes that resumes from its cursor.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

func main() {
	client, err := artifactd.New(os.Getenv("ARTIFACTD_URL"), os.Getenv("ARTIFACTD_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sweep := fmt.Sprintf("sweep-%d", time.Now().UnixNano())
	inSweep := &artifactd.Filter{Provenance: &artifactd.Provenance{ParentRunId: sweep}}

	// Events of the sweep's artifacts, as they happen; a dropped stream resumes after the last event seen.
	events := make(chan *artifactd.WatchEvent, 16)
	live := make(chan struct{})
	var once sync.Once
	whenLive := artifactd.OnLive(func(string) { once.Do(func() { close(live) }) })
	go func() {
		for event, err := range client.Watch(ctx, inSweep, "", whenLive) { // pass a kept event.GetCursor() to resume later
			if err != nil {
				log.Print(err)
				return
			}
			events <- event
		}
	}()
	<-live // a watch from now sees everything saved once it is live

	for i, accuracy := range []float64{0.88, 0.93, 0.91} {
		_, err := client.SaveText(ctx, "weights", &artifactd.Spec{
			Kind: "model", Name: fmt.Sprintf("classifier-%d", i), Metrics: map[string]float64{"accuracy": accuracy},
			Provenance: &artifactd.Provenance{ParentRunId: sweep, RunId: fmt.Sprintf("%s-%d", sweep, i)},
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	seen := 0
	for page, err := range client.List(ctx, inSweep, 2) { // newest first, two a page
		if err != nil {
			log.Fatal(err)
		}
		seen += len(page)
	}
	best, err := client.Best(ctx, "model", "accuracy", artifactd.Within(inSweep))
	if err != nil || seen != 3 || best.GetMetrics()["accuracy"] != 0.93 {
		log.Fatalf("listed %d, best %v: %v", seen, best, err)
	}
	if _, err := client.Pin(ctx, best.GetId(), true); err != nil {
		log.Fatal(err)
	}
	for created := 0; created < 3; {
		select {
		case event := <-events:
			if event.GetType() == artifactd.EventCreated {
				created++
			}
		case <-ctx.Done():
			log.Fatal("the watch did not report the three saves")
		}
	}
}
