#!/bin/sh
# Build the Docker Compose v2 CLI plugin from its Go module and install it as
# ~/.docker/cli-plugins/docker-compose, for machines that have the docker CLI
# but no compose plugin (no Docker engine is needed: `docker compose config`
# only validates and renders the file). Needs Go >= 1.24; ~5-10 min on 2 cores.
#   sh deploy/tools/install-compose-plugin.sh [VERSION]
set -eu
VERSION="${1:-v2.40.3}"
DEST="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

if docker compose version >/dev/null 2>&1; then
  echo "docker compose is already installed: $(docker compose version)"
  exit 0
fi
command -v go >/dev/null || { echo "install-compose-plugin: needs Go (https://go.dev/dl)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# `go install module@version` refuses modules whose go.mod has exclude or
# replace directives (compose's has both): build it as the main module instead.
dir="$(go mod download -json "github.com/docker/compose/v2@$VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
cp -R "$dir" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
GOFLAGS=-buildvcs=false go build -trimpath \
  -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$VERSION" \
  -o "$work/docker-compose" ./cmd
mkdir -p "$DEST"
install -m 0755 "$work/docker-compose" "$DEST/docker-compose"
docker compose version
