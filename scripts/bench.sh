#!/usr/bin/env bash
# Runs wharf's benchmarks. Each prints its figures and a "ratio" against a
# baseline measured in the same run (medians of alternating rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
WHARF_BENCH=1 ./scripts/deps.sh
go test -run '^$' -bench . -benchtime 1x -timeout 60m ./... | grep -E '^(Benchmark|ok|FAIL|---)'
