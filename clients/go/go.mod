module github.com/artifactd/artifactd/clients/go

go 1.26.0

require (
	connectrpc.com/connect v1.21.1
	github.com/zeebo/blake3 v0.2.4
	google.golang.org/protobuf v1.36.12
	lukechampine.com/blake3 v1.4.1
)

require github.com/klauspost/cpuid/v2 v2.0.12 // indirect

tool (
	connectrpc.com/connect/cmd/protoc-gen-connect-go
	google.golang.org/protobuf/cmd/protoc-gen-go
)
