#!/usr/bin/env bash
# leftovers.sh --containers: lists the host's wharf container cgroups and
# shims, container network namespaces, and wharfs' links and nft tables
# (of the host's network namespace), one per line.
# leftovers.sh [BEFORE]: run after the tests. Fails if a test process that
# has ended left its scratch directories behind (internal/testutil/
# scratch.go: every TestMain must remove them) or a registered data
# directory not reclaimed, or if a container cgroup, shim, network
# namespace, link or firewall table outlived the tests that is not in BEFORE (what --containers listed before them: a
# wharf serve running meanwhile is not the tests'). Each
# test checks what its own wharf left, but a cgroup is named after its
# containerd's runc root, which not every test's check knows.
set -euo pipefail

containers() {
	# containerd/cgroup.go: /wharf/<runc root's hash>-<id>, in each v1
	# hierarchy or in the v2 one.
	for dir in /sys/fs/cgroup/wharf/*/ /sys/fs/cgroup/*/wharf/*/; do
		[ -d "$dir" ] && echo "cgroup $dir"
	done
	# Anchored at the command's start: unanchored, the pattern matched
	# this script itself once BEFORE (its argument) listed a shim.
	pgrep -a -f '^([^ ]*/)?containerd-shim-runc-v2 -namespace (wharf|wharf-build) ' | sed 's/^/shim /' || true
	# A wharf's table stays after a kill -9 for its next run to replace,
	# or, once its data directory is removed, for the next wharf on the
	# host (containerd/deadscope.go): a test must not count on either.
	go run ./scripts/nfttables
	# containerd/network.go: namespaces wharf-<scope><id hash>, host ends
	# of the veth pairs wh<scope><id hash>.
	for ns in /run/netns/wharf-*; do
		[ -e "$ns" ] && echo "network namespace $ns"
	done
	ip -o link show | awk -F': ' '$2 ~ /^wh[0-9a-f]+(@|$)/ { sub(/@.*/, "", $2); print "link " $2 }'
}

if [ "${1:-}" = --containers ]; then
	containers
	exit 0
fi
before=${1:-}
left=0
for dir in "${TMPDIR:-/tmp}"/wharf-scratch-* /dev/shm/wharf-scratch-*; do
	[ -e "$dir" ] || continue
	pid=${dir##*/wharf-scratch-}
	pid=${pid%%-*}
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "left behind by ended test process $pid: $dir" >&2
		left=1
	fi
done
# internal/ephemeral: a data directory an ended test process registered
# that is still there was not reclaimed (its links to directories that are
# gone are dropped by the next test process).
for link in /run/wharf-ephemeral/*-*; do
	[ -L "$link" ] || continue
	pid=${link##*/}
	pid=${pid%%-*}
	if ! kill -0 "$pid" 2>/dev/null && [ -e "$(readlink "$link")" ]; then
		echo "left behind by ended test process $pid: registered data directory $(readlink "$link")" >&2
		left=1
	fi
done
while IFS= read -r line; do
	[ -n "$line" ] || continue
	if ! grep -qxF -- "$line" <<<"$before"; then
		echo "left behind by the tests: $line" >&2
		left=1
	fi
done < <(containers)
exit "$left"
