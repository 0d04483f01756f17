#!/usr/bin/env bash
# Fails if a test process that has ended left its scratch directories
# behind (internal/testutil/scratch.go): every TestMain must remove them.
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
exit "$left"
