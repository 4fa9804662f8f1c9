#!/usr/bin/env bash
# The checks of deploy/ that run on this machine, with no Docker engine, no Kubernetes
# cluster and no systemd running the units (deploy/README.md says what that leaves out):
#
#   compose  `docker-compose config -q` (Debian's docker-compose 1.29, installed with apt when
#            missing), then check.py on the resolved file
#   k8s      every manifest against the Kubernetes 1.28 and 1.37 schemas, offline and strict
#            (unknown fields are errors; so is a kind without a schema), with
#            kubernetes-validate (bundles the schemas) in the venv $EBROKER_DEPLOY_VENV
#            (default ~/.cache/ebroker/deploy-venv), then check.py
#   systemd  `systemd-analyze verify` of every unit in a temporary root that holds the
#            system's units and this build's binaries at the paths ExecStart= names (any
#            output is a failure: verify exits 0 on unknown keys and bad values), `systemd-
#            analyze security --offline` under a threshold, `systemd-sysusers --dry-run`,
#            then check.py
#   docker   `bash -n` of http-probe, then check.py (targets, user, ldd against the packages)
#   probes   a scheduler and an executor of this build on free ports: every HTTP path the
#            manifests probe must answer 200 through deploy/docker/http-probe
#
# check.py runs every command line of the manifests through its binary with --help appended
# and loads every ebroker.toml with `ebroker config show`: it needs the release build
# ($EBROKER_BIN_DIR, default ./target/release; deploy/local/build.sh makes it).
# Exits 1 naming every check that failed.
set -uo pipefail
cd "$(dirname "$0")"
DEPLOY="$PWD"
ROOT="$(cd .. && pwd)"
BIN="${EBROKER_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
export EBROKER_BIN_DIR="$BIN"
VENV="${EBROKER_DEPLOY_VENV:-$HOME/.cache/ebroker/deploy-venv}"
KV_VERSION=1.37.0
K8S_VERSIONS=(1.28.0 1.37.0)
# systemd-analyze security --threshold counts tenths: 20 is the "2.0" it prints (0 safest, 10 unsafe).
SECURITY_THRESHOLD=20
START=$SECONDS
TMP="$(mktemp -d /tmp/ebroker-deploy-check.XXXXXX)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

FAILED=()
fail() { FAILED+=("$1"); echo "FAIL $1"; }
ok() { echo "ok   $1"; }
section() { echo "== $1 ($((SECONDS - START)) s)"; }
die() { echo "deploy/check.sh: $*" >&2; exit 1; }

section "tools"
for b in ebroker ebroker-scheduler ebroker-executor; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: build first (deploy/local/build.sh) or set EBROKER_BIN_DIR"
done
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v docker-compose >/dev/null; then
  echo "installing docker-compose (Debian package; it validates compose files without an engine)"
  $sudo apt-get update -qq
  # --no-install-recommends: without it apt also installs docker.io, the engine, which is not wanted.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
    || die "could not install docker-compose"
fi
command -v systemd-analyze >/dev/null || die "systemd-analyze is missing (Debian package systemd)"
if [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$KV_VERSION" ]; then
  echo "installing kubernetes-validate $KV_VERSION into $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install -q "kubernetes-validate==$KV_VERSION" || die "could not install kubernetes-validate"
fi
PY="$VENV/bin/python"
"$PY" -c 'import tomllib, yaml' 2>/dev/null || die "$PY lacks tomllib (Python >= 3.11) or PyYAML"

section "compose"
COMPOSE=(docker-compose --project-directory "$DEPLOY/compose" -f "$DEPLOY/compose/docker-compose.yml")
if out="$("${COMPOSE[@]}" config -q 2>&1)" && [ -z "$out" ]; then
  ok "compose: docker-compose config -q"
else
  echo "$out"; fail "compose: docker-compose config -q"
fi
if "${COMPOSE[@]}" config >"$TMP/compose.yml" 2>"$TMP/compose.err"; then
  "$PY" check.py compose "$TMP/compose.yml" || fail "compose: structural checks (above)"
else
  cat "$TMP/compose.err"; fail "compose: docker-compose config"
fi

section "k8s"
mapfile -t MANIFESTS < <(ls k8s/*.yaml | grep -v '/kustomization.yaml$')
for v in "${K8S_VERSIONS[@]}"; do
  out="$("$VENV/bin/kubernetes-validate" --strict -k "$v" "${MANIFESTS[@]}" 2>&1)"; rc=$?
  # It exits 0 on a kind it has no schema for (a misspelt kind): anything but INFO fails.
  if [ "$rc" -eq 0 ] && ! grep -qv '^INFO ' <<<"$out"; then
    ok "k8s: ${#MANIFESTS[@]} manifests valid against the Kubernetes $v schemas (strict)"
  else
    grep -v '^INFO ' <<<"$out"; fail "k8s: schemas of Kubernetes $v"
  fi
done
"$PY" check.py k8s || fail "k8s: structural checks (above)"

section "systemd"
SDROOT="$TMP/root"
mkdir -p "$SDROOT/etc/systemd/system" "$SDROOT/usr/lib/systemd" "$SDROOT/usr/local/bin" "$SDROOT/etc"
ln -s usr/lib "$SDROOT/lib"
# The system's own units (sysinit.target, timers.target, ...) that verify resolves.
cp -a "$(realpath /lib/systemd/system)" "$SDROOT/usr/lib/systemd/system"
cp systemd/*.service systemd/*.timer "$SDROOT/etc/systemd/system/"
# The binaries ExecStart= names, from this build (verify needs them to exist and be
# executable; check.py runs their command lines).
for exe in $(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' systemd/*.service | sort -u); do
  if [ -x "$BIN/$(basename "$exe")" ]; then
    mkdir -p "$SDROOT$(dirname "$exe")"
    ln "$BIN/$(basename "$exe")" "$SDROOT$exe" 2>/dev/null || cp "$BIN/$(basename "$exe")" "$SDROOT$exe"
  fi
done
UNITS=()
for f in systemd/*.service systemd/*.timer; do
  u="$(basename "$f")"
  # A template is verified through an instance: the one its timer starts, else "check".
  if [[ "$u" == *@.service ]]; then
    inst="$(sed -n "s/^Unit=\(${u%.service}[^.]*\)\.service$/\1/p" systemd/*.timer | head -1)"
    u="${inst:-${u%.service}check}.service"
  fi
  UNITS+=("$u")
done
if out="$(systemd-analyze verify --root="$SDROOT" "${UNITS[@]}" 2>&1)" && [ -z "$out" ]; then
  ok "systemd: systemd-analyze verify ${UNITS[*]}"
else
  echo "$out"; fail "systemd: systemd-analyze verify"
fi
for u in "${UNITS[@]}"; do
  [[ "$u" == *.service ]] || continue
  if out="$(systemd-analyze security --offline=yes --threshold="$SECURITY_THRESHOLD" --root="$SDROOT" "$u" 2>&1)"; then
    ok "systemd: $u exposure $(grep -o 'level for [^:]*: [0-9.]*' <<<"$out" | awk '{print $NF}') <= $((SECURITY_THRESHOLD / 10)).$((SECURITY_THRESHOLD % 10)) (systemd-analyze security --offline)"
  else
    grep -vE '^ *✓' <<<"$out" | tail -25
    fail "systemd: systemd-analyze security $u over $((SECURITY_THRESHOLD / 10)).$((SECURITY_THRESHOLD % 10))"
  fi
done
: >"$SDROOT/etc/passwd"; : >"$SDROOT/etc/group"
if out="$(systemd-sysusers --root="$SDROOT" --dry-run "$DEPLOY/systemd/sysusers-ebroker.conf" 2>&1)" \
  && ! grep -q 'sysusers-ebroker.conf:' <<<"$out" && grep -q "Creating user 'ebroker'" <<<"$out"; then
  ok "systemd: systemd-sysusers --dry-run sysusers-ebroker.conf creates ebroker"
else
  echo "$out"; fail "systemd: systemd-sysusers --dry-run"
fi
"$PY" check.py systemd || fail "systemd: structural checks (above)"

section "docker"
if bash -n docker/http-probe; then ok "docker: bash -n http-probe"; else fail "docker: bash -n http-probe"; fi
"$PY" check.py docker || fail "docker: structural checks (above)"

section "probes"
# A scheduler and an executor of this build, on free loopback ports, in a directory of
# their own (they read ./ebroker.toml).
read -r SP FP GP HP < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
mkdir -p "$TMP/probe"
printf '[engine]\nspill_dir = "%s/probe/spill"\n' "$TMP" >"$TMP/probe/ebroker.toml"
(cd "$TMP/probe" && exec env -u RUST_LOG "$BIN/ebroker-scheduler" --bind-host 127.0.0.1 --bind-port "$SP" \
  --external-host 127.0.0.1 >"$TMP/probe/scheduler.log" 2>&1) &
PIDS+=($!)
(cd "$TMP/probe" && exec env -u RUST_LOG "$BIN/ebroker-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
  --scheduler-host 127.0.0.1 --scheduler-port "$SP" --scheduler-connect-timeout-seconds 20 -p "$FP" \
  --bind-grpc-port "$GP" --bind-health-port "$HP" -c 1 --memory-pool-size 0 \
  --executor-heartbeat-interval-seconds 1 --work-dir "$TMP/probe/work" >"$TMP/probe/executor.log" 2>&1) &
PIDS+=($!)
PROBE="$DEPLOY/docker/http-probe"
for _ in $(seq 200); do "$PROBE" "$HP" /readyz 2>/dev/null && break; sleep 0.1; done
declare -A PORT_OF=([ebroker-scheduler]="$SP" [ebroker-executor]="$HP")
while read -r binary path; do
  if out="$("$PROBE" "${PORT_OF[$binary]}" "$path" 2>&1)"; then
    ok "probes: $binary answers 200 on $path"
  else
    echo "$out"; tail -3 "$TMP/probe/"*.log; fail "probes: $binary on $path"
  fi
done < <("$PY" check.py probes)
if "$PROBE" "$HP" /no-such-path 2>/dev/null; then
  fail "probes: http-probe accepted a 404"
else
  ok "probes: http-probe fails on a 404"
fi

echo "== $((SECONDS - START)) s"
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "deploy/check.sh: ${#FAILED[@]} check(s) failed:" >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "deploy/check.sh: all deploy checks passed"
