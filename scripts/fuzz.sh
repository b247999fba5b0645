#!/usr/bin/env bash
# Runs every fuzz target of the workspace for the given time each.
# A target is a func FuzzXxx(f *testing.F) in a *_test.go file.
#
# Go 1.26's fuzz coordinator sometimes fails a target at the end of
# -fuzztime with a bare "context deadline exceeded" and no failing input
# (a race in internal/fuzz, golang/go#75804, fixed in Go 1.27). Such a run
# found nothing; the target is run once more, and if that ends the same way
# it is reported as the known race, not as a finding. Any other failure, or a
# failing input written to testdata/fuzz, fails the run.
set -euo pipefail
fuzztime=${1:-60s}
cd "$(dirname "$0")/.."
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# fuzz_once DIR TARGET: 0 passed, 1 failed with a finding or another error,
# 2 failed only with the coordinator's deadline race.
fuzz_once() {
  local dir=$1 target=$2 before after rc=0
  before=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | sort || true)
  (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" .) >"$log" 2>&1 || rc=$?
  cat "$log"
  if [ $rc -eq 0 ]; then
    return 0
  fi
  after=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | sort || true)
  if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$log" &&
     ! grep -qE 'Failing input written|panic:|fuzzing process hung' "$log"; then
    return 2
  fi
  return 1
}

while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "fuzz: $dir $target for $fuzztime"
    rc=0
    fuzz_once "$dir" "$target" || rc=$?
    if [ $rc -eq 2 ]; then
      echo "fuzz: $target: 'context deadline exceeded' with no failing input (golang/go#75804); running it again"
      rc=0
      fuzz_once "$dir" "$target" || rc=$?
      if [ $rc -eq 2 ]; then
        echo "fuzz: $target: the same coordinator race twice, no failing input: not a finding" >&2
        rc=0
      fi
    fi
    if [ $rc -ne 0 ]; then
      echo "fuzz: $target in $dir FAILED (see testdata/fuzz/$target for the input)" >&2
      status=1
    fi
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
exit $status
