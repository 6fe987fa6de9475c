#!/usr/bin/env bash
# The code-shape check (scripts/check-sizes.py) on crates made to break it, and on ones that keep
# to it (a long test module does not count).
set -uo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

expect() { # name, dir, expected exit code, expected text
  local out code
  out="$(python3 scripts/check-sizes.py "$2" 2>&1)"; code=$?
  if [ "$code" -eq "$3" ] && grep -qF -- "$4" <<<"$out"; then
    echo "ok   $1"; passed=$((passed + 1))
  else
    echo "FAIL $1 (exit $code)"; sed 's/^/     | /' <<<"$out"; failed=$((failed + 1))
  fi
}

body() { for _ in $(seq "$1"); do echo "    let _ = 1;"; done; }

mkdir -p "$tmp/ok/a/src" "$tmp/long-fn/a/src" "$tmp/long-file/a/src"
{ echo "fn short() {"; body 100; echo "}"; echo "#[cfg(test)]"; echo "mod tests {"; body 900; echo "}"; } > "$tmp/ok/a/src/lib.rs"
{ echo "pub async fn long() {"; body 130; echo "}"; } > "$tmp/long-fn/a/src/lib.rs"
{ for i in $(seq 8); do echo "fn f$i() {"; body 90; echo "}"; done; } > "$tmp/long-file/a/src/lib.rs"

expect "short functions and a long test module pass" "$tmp/ok" 0 "0 over the limits"
expect "a 132-line function is refused" "$tmp/long-fn" 1 "fn long is 132 lines"
expect "a 736-line file is refused" "$tmp/long-file" 1 "736 lines outside tests"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
