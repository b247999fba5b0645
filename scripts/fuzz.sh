#!/usr/bin/env bash
# Runs every fuzz target of the workspace for the given time each.
# A target is a func FuzzXxx(f *testing.F) in a *_test.go file.
set -euo pipefail
fuzztime=${1:-60s}
cd "$(dirname "$0")/.."
status=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "fuzz: $dir $target for $fuzztime"
    if ! (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" .); then
      echo "fuzz: $target in $dir FAILED (see testdata/fuzz/$target for the input)" >&2
      status=1
    fi
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
exit $status
