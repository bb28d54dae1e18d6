#!/bin/sh
# Runs a protoc plugin pinned by clients/go/go.mod's `tool` directives
# (protoc-gen-go, protoc-gen-connect-go), so `buf generate` uses the same
# versions as the runtime libraries the SDK builds against, fetched by Go's
# module download on first use. Go is the one on PATH, else /usr/local/go.
set -eu
go_bin=$(command -v go || true)
[ -n "$go_bin" ] || go_bin=/usr/local/go/bin/go
[ -x "$go_bin" ] || { echo "protoc-plugin.sh: Go not found on PATH or at /usr/local/go/bin/go" >&2; exit 1; }
exec "$go_bin" -C "$(dirname "$0")/.." tool "$1"
