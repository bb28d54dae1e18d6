// Package blake3bench measures the two maintained Go BLAKE3 modules the way
// the SDK uses a hasher: one streaming hasher fed the message-sized pieces a
// transfer brings (256 KiB, as the Upload and Download messages carry), and
// small contents hashed whole. The SDK's choice and the figures are in the
// README ("The Go client").
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/blake3bench
package blake3bench

import (
	"crypto/rand"
	"hash"
	"testing"

	zeebo "github.com/zeebo/blake3"
	lukechampine "lukechampine.com/blake3"
)

var hashers = []struct {
	name string
	new  func() hash.Hash
}{
	{"lukechampine.com/blake3", func() hash.Hash { return lukechampine.New(32, nil) }},
	{"github.com/zeebo/blake3", func() hash.Hash { return zeebo.New() }},
}

// A transfer: 64 MiB in 256 KiB pieces through one hasher.
func BenchmarkStream256KiB(b *testing.B) {
	piece := make([]byte, 256*1024)
	rand.Read(piece)
	const pieces = 256
	for _, h := range hashers {
		b.Run(h.name, func(b *testing.B) {
			b.SetBytes(int64(len(piece) * pieces))
			for b.Loop() {
				hasher := h.new()
				for range pieces {
					hasher.Write(piece)
				}
				hasher.Sum(nil)
			}
		})
	}
}

// A small artifact (a JSON result, a manifest) hashed whole.
func BenchmarkSmall4KiB(b *testing.B) {
	content := make([]byte, 4*1024)
	rand.Read(content)
	for _, h := range hashers {
		b.Run(h.name, func(b *testing.B) {
			b.SetBytes(int64(len(content)))
			for b.Loop() {
				hasher := h.new()
				hasher.Write(content)
				hasher.Sum(nil)
			}
		})
	}
}
