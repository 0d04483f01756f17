#!/usr/bin/env bash
# Installs what wharf's build, tests and benchmarks need on a fresh Debian
# machine, skipping what is already there.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"

need_apt=()
command -v go >/dev/null || need_apt+=(golang-go)
command -v git >/dev/null || need_apt+=(git)
command -v curl >/dev/null || need_apt+=(curl)
command -v gcc >/dev/null || need_apt+=(gcc)                  # cgo: SQLite
command -v containerd >/dev/null || need_apt+=(containerd)    # the container backend
command -v runc >/dev/null || need_apt+=(runc)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)      # container disk quotas
[ -x /bin/busybox ] || need_apt+=(busybox-static)             # test images
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)    # the Debian base image (examples/pyapp)
command -v ip >/dev/null || need_apt+=(iproute2)             # ip netns exec: the cluster partition test
if [ "${WHARF_BENCH:-}" = 1 ]; then
  command -v wrk >/dev/null || need_apt+=(wrk)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need_apt[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "installing: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The Go version go.mod names (go 1.N.x) or newer.
need=$(sed -nE 's/^go 1\.([0-9]+).*/\1/p' go.mod)
minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "${minor:-0}" -lt "$need" ]; then
  echo "wharf needs Go 1.$need or newer (go.mod); found $(go env GOVERSION)" >&2
  exit 1
fi
go mod download
