#!/usr/bin/env bash
# Run after the tests. Fails if a test process that has ended left its
# scratch directories behind (internal/testutil/scratch.go: every TestMain
# must remove them), or if a container's cgroup or shim outlived the tests:
# each test checks what its own wharf left, but a cgroup is named after the
# containerd's runc root, which not every test's check knows.
set -euo pipefail
left=0
for dir in "${TMPDIR:-/tmp}"/wharf-scratch-*; do
	[ -e "$dir" ] || continue
	pid=${dir##*/wharf-scratch-}
	pid=${pid%%-*}
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "left behind by ended test process $pid: $dir" >&2
		left=1
	fi
done
# containerd/cgroup.go: /wharf/<runc root's hash>-<id>, in each v1 hierarchy or in the v2 one.
for dir in /sys/fs/cgroup/wharf/*/ /sys/fs/cgroup/*/wharf/*/; do
	[ -d "$dir" ] || continue
	echo "container cgroup left behind: $dir" >&2
	left=1
done
if pgrep -a -f 'containerd-shim-runc-v2 -namespace (wharf|wharf-build) ' >&2; then
	echo "container shims left behind (above)" >&2
	left=1
fi
exit "$left"
