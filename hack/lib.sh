# Shared by the hack/ scripts: where caches live and how the Python environment is made.
# shellcheck shell=bash

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${MODELPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelpilot}
export UV_PROJECT_ENVIRONMENT=${UV_PROJECT_ENVIRONMENT:-$cache_root/venv}
export UV_CACHE_DIR=${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
# Compiled once at install: imports stay fast even where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages the tests use: Prometheus (+ promtool) as a real metrics backend, wrk for the benchmark,
# openssl for the control plane's certificates; for the real node containerd, runc, the CNI plugins and
# iptables; for images without a Docker daemon buildah, skopeo and mmdebstrap (hack/images).
ensure_debian_packages() {
  local missing=() command
  # Each of these commands comes with the Debian package of the same name.
  for command in prometheus openssl wrk containerd runc iptables conntrack buildah skopeo mmdebstrap curl; do
    command -v "$command" >/dev/null || missing+=("$command")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  # PostgreSQL's binaries live under /usr/lib/postgresql/<major>/bin, not on PATH.
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
  # Headless Chromium and its WebDriver for the dashboard's browser tests (tests/cluster/kubectl/test_dashboard.py).
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages' own services are not wanted: tests start Prometheus and PostgreSQL themselves on loopback,
  # and the real node runs a containerd of its own (hack/cluster).
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus prometheus-node-exporter containerd postgresql >/dev/null 2>&1 || true
  fi
}

# uv comes from hack/uv-requirements.txt (version and hashes), as in the Dockerfiles and the workflows.

ensure_python_env() {
  # pip --user puts uv in ~/.local/bin: look there first, so a warm run does not reinstall it.
  command -v uv >/dev/null || export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null || { log "installing uv"; python3 -m pip install --quiet --user --require-hashes -r "$repo_root/hack/uv-requirements.txt"; }
  log "syncing the Python environment into $UV_PROJECT_ENVIRONMENT"
  (cd "$repo_root" && uv sync --frozen --all-packages --quiet)
  export PATH="$UV_PROJECT_ENVIRONMENT/bin:$PATH"
  # The cached venv is shared by every checkout and its editable installs point at the last one synced;
  # this checkout's sources come first on the path for this shell and every process it starts.
  export PYTHONPATH="$repo_root/operator/src:$repo_root/inference/src:$repo_root/training/src${PYTHONPATH:+:$PYTHONPATH}"
}

ensure_control_plane_binaries() {
  log "building the control plane binaries (cached after the first run)"
  local bin
  bin=$("$repo_root/hack/build-tools" | tail -n 1)
  export PATH="$bin:$PATH"
}
