#!/usr/bin/env bash
# Tests scripts/check-deps.py on small synthetic workspaces: one clean, and one per kind of
# violation (or of dependency that must NOT count as one). Works offline with crates already in
# the local cargo cache (tokio, axum); nothing is compiled.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
check="$here/check-deps.py"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0

# workspace NAME: a fresh workspace root; prints its directory.
workspace() {
  local ws="$tmp/$1"
  mkdir -p "$ws/crates"
  printf '[workspace]\nresolver = "3"\nmembers = ["crates/*"]\n' > "$ws/Cargo.toml"
  echo "$ws"
}

# crate WS NAME LAYER [TOML LINE...]: a library crate; LAYER "-" declares none. The remaining
# arguments are appended to its Cargo.toml (dependency sections).
crate() {
  local ws="$1" name="$2" layer="$3"
  shift 3
  mkdir -p "$ws/crates/$name/src"
  : > "$ws/crates/$name/src/lib.rs"
  {
    printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2024"\n' "$name"
    [ "$layer" = - ] || printf '\n[package.metadata.sigil]\nlayer = "%s"\n' "$layer"
    [ $# -eq 0 ] || printf '\n'
    for line in "$@"; do printf '%s\n' "$line"; done
  } > "$ws/crates/$name/Cargo.toml"
}

# expect NAME WS STATUS [TEXT...]: runs the check on WS; the exit status must be STATUS and the
# output must contain every TEXT (fixed strings).
expect() {
  local name="$1" ws="$2" want="$3"
  shift 3
  local out status ok=1
  out="$(python3 "$check" --manifest-path "$ws/Cargo.toml" 2>&1)"
  status=$?
  if [ "$status" -ne "$want" ]; then
    ok=0
    echo "FAIL $name: exit status $status, expected $want"
  fi
  for text in "$@"; do
    if ! grep -qF -- "$text" <<<"$out"; then
      ok=0
      echo "FAIL $name: output lacks: $text"
    fi
  done
  if [ "$ok" -eq 1 ]; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    sed 's/^/     | /' <<<"$out"
  fi
}

dep() { printf '%s = { path = "../%s" }' "$1" "$1"; }

# 1. Clean: every layer, each depending only on what it may.
ws="$(workspace clean)"
crate "$ws" pure pure
crate "$ws" authority authority '[dependencies]' "$(dep pure)" 'tokio = "1"'
crate "$ws" http http '[dependencies]' 'tokio = "1"'
crate "$ws" fe-a front-end '[dependencies]' "$(dep authority)" "$(dep http)"
crate "$ws" fe-b front-end '[dependencies]' "$(dep authority)" "$(dep http)"
crate "$ws" glue glue '[dependencies]' "$(dep pure)" "$(dep authority)" "$(dep http)" \
  "$(dep fe-a)" "$(dep fe-b)"
crate "$ws" bench tool '[dependencies]' "$(dep glue)" 'axum = { version = "0.8", default-features = false }'
expect "clean workspace passes" "$ws" 0 "dependency rules: 7 crates checked, all clean"

# 2. A pure crate reaching tokio through an I/O-layer helper: both the helper and tokio are
# named, with the path.
ws="$(workspace transitive)"
crate "$ws" pure pure '[dependencies]' "$(dep helper)"
crate "$ws" helper authority '[dependencies]' 'tokio = "1"'
expect "pure -> helper -> tokio is refused" "$ws" 1 \
  "pure (pure) must not depend on tokio: pure -> helper -> tokio" \
  "pure (pure) must not depend on helper (authority): pure -> helper" \
  "dependency rules: 2 violation(s)"

# 3. A front-end depending on another front-end.
ws="$(workspace front-to-front)"
crate "$ws" fe-a front-end '[dependencies]' "$(dep fe-b)"
crate "$ws" fe-b front-end
expect "front-end -> front-end is refused" "$ws" 1 \
  "fe-a (front-end) must not depend on fe-b (front-end): fe-a -> fe-b" \
  "dependency rules: 1 violation(s)"

# 4. A crate that declares no layer (fail closed), and 5. one with a layer that does not exist.
ws="$(workspace no-layer)"
crate "$ws" pure pure
crate "$ws" stray -
expect "a crate without a layer is refused" "$ws" 1 "stray: no layer declared" \
  "dependency rules: 1 violation(s)"

ws="$(workspace bad-layer)"
crate "$ws" odd core
expect "a crate with an unknown layer is refused" "$ws" 1 "odd: unknown layer 'core'"

# 6. tokio as a dev-dependency (and as a build-dependency) of a pure crate does not count.
ws="$(workspace dev-dep)"
crate "$ws" pure pure '[dev-dependencies]' 'tokio = "1"' '[build-dependencies]' 'tokio = "1"'
expect "dev- and build-dependencies do not count" "$ws" 0 "all clean"

# 7. The authority doing HTTP: axum is named, once (not what axum itself drags in).
ws="$(workspace authority-axum)"
crate "$ws" authority authority '[dependencies]' 'axum = { version = "0.8", default-features = false }'
expect "authority -> axum is refused" "$ws" 1 \
  "authority (authority) must not depend on axum: authority -> axum" \
  "dependency rules: 1 violation(s)"

# 8. A platform-specific dependency counts even when it is not for this host.
ws="$(workspace target-dep)"
crate "$ws" pure pure "[target.'cfg(windows)'.dependencies]" 'tokio = "1"'
expect "a platform-specific dependency counts" "$ws" 1 \
  "pure (pure) must not depend on tokio: pure -> tokio"

# 9. An optional dependency is a dependency: a pure crate's optional tokio counts even though
# only glue turns it on; a pure crate using that crate without the feature stays clean.
ws="$(workspace optional-dep)"
crate "$ws" lib pure '[dependencies]' 'tokio = { version = "1", optional = true }'
crate "$ws" core pure '[dependencies]' "$(dep lib)"
crate "$ws" glue glue '[dependencies]' 'lib = { path = "../lib", features = ["tokio"] }'
expect "an optional dependency counts" "$ws" 1 \
  "lib (pure) must not depend on tokio: lib -> tokio" \
  "dependency rules: 1 violation(s)"

# 10. The product linking a tool (the test kit must stay a dev-dependency), and an adapter
# (storage) reaching up into the authority.
ws="$(workspace product-tool)"
crate "$ws" kit tool
crate "$ws" authority authority
crate "$ws" store adapter '[dependencies]' "$(dep authority)"
crate "$ws" glue glue '[dependencies]' "$(dep kit)" '[dev-dependencies]' "$(dep kit)"
crate "$ws" fe front-end '[dev-dependencies]' "$(dep kit)"
expect "product -> tool and adapter -> authority are refused" "$ws" 1 \
  "glue (glue) must not depend on kit (tool): glue -> kit" \
  "store (adapter) must not depend on authority (authority): store -> authority" \
  "dependency rules: 2 violation(s)"

# 11. The device agent linking the server, and a pure crate reaching a tokio- companion crate.
ws="$(workspace device)"
crate "$ws" server glue
crate "$ws" agent device '[dependencies]' "$(dep server)"
crate "$ws" pure pure '[dependencies]' 'tokio-stream = { version = "0.1", default-features = false }'
expect "device -> glue and pure -> tokio-stream are refused" "$ws" 1 \
  "agent (device) must not depend on server (glue): agent -> server" \
  "pure (pure) must not depend on tokio-stream: pure -> tokio-stream"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
