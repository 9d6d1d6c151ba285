#!/usr/bin/env bash
# Installs what building and testing warden needs, idempotently:
# Debian packages (LLVM 22 for bpf-linker, clang, bpftool, iproute2; buildah, podman, runc and skopeo for the
# container image; QEMU, static
# busybox and cpio for the BPF-LSM VM tests of `cargo xtask vm-test` (xz and e2fsprogs: its overlay and
# loop modules and ext4 image); Slurm and
# munge for the Slurm metadata test; python3-venv for the PyPI tools), rotel (an OTLP collector, from PyPI), Helm's
# SDK and the Kubernetes schemas (PyPI, for the manifest test), promtool (unpacked from Debian's prometheus), the
# nightly rust-src component and bpf-linker built against LLVM 22.
# Each step runs only when its result is missing.
set -euo pipefail

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (installs packages; warden itself needs root to load eBPF)" >&2
  exit 1
fi

# slurmctld, slurmd, slurm-client and munge: a real Slurm pair on loopback for agent/tests/slurm.rs;
# systemd for `systemd-analyze verify` of the unit file (agent/tests/packaging.rs);
# python3-venv for rotel and the Helm SDK below;
# buildah (`cargo xtask image`, no daemon), podman and runc to run that image in agent/tests/image.rs (crun refuses
# hybrid cgroups), skopeo to push it (README).
PKGS=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev clang-22 bpftool iproute2 qemu-system-x86 busybox-static cpio xz-utils e2fsprogs
  slurmctld slurmd slurm-client munge systemd python3 python3-venv buildah podman runc skopeo)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The VM tests find Debian kernels with apt-cache: the lists must be there.
if [ -z "$(apt-cache search --names-only '^linux-image-6\.12\.[0-9].*-cloud-amd64$' 2>/dev/null | head -1)" ]; then
  log "refreshing apt lists (VM tests look up Debian kernel packages)"
  apt-get update -qq
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
# rust-src for -Z build-std=core; rustfmt and clippy lint the eBPF crate.
for c in rust-src rustfmt clippy; do
  if ! rustup component list --toolchain nightly --installed | grep -q "^$c"; then
    log "adding $c to nightly"
    rustup component add "$c" --toolchain nightly
  fi
done
for c in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$c"; then
    log "adding $c to the default toolchain"
    rustup component add "$c"
  fi
done

if ! command -v bpf-linker >/dev/null 2>&1; then
  log "building bpf-linker against LLVM 22 (about a minute)"
  # Build artefacts live in target/ so CI caches them between runs.
  root="$(cd "$(dirname "$0")/.." && pwd)"
  LLVM_PREFIX=/usr/lib/llvm-22 CARGO_TARGET_DIR="$root/target/tools" \
    cargo install bpf-linker --version 0.13.0 --locked --no-default-features --features llvm-22
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz (coverage-guided fuzzing of the parsers)"
  root="$(cd "$(dirname "$0")/.." && pwd)"
  CARGO_TARGET_DIR="$root/target/tools" cargo install cargo-fuzz --version 0.13.2 --locked
fi
# rotel: a real OpenTelemetry collector (PyPI) for the OTLP tests and `cargo xtask bench events --otlp`.
root="$(cd "$(dirname "$0")/.." && pwd)"
rotel="$root/target/tools/rotel"
if [ ! -x "$rotel/bin/rotel-agent" ]; then
  log "installing rotel (OTLP collector, PyPI) into target/tools/rotel"
  python3 -m venv "$rotel"
  "$rotel/bin/pip" install -q rotel==0.0.1a15
  # The wheel ships the binary inside the package.
  ln -sf "$("$rotel/bin/python" -c 'import os, rotel; print(os.path.dirname(rotel.__file__))')/rotel-agent" \
    "$rotel/bin/rotel-agent"
fi
# Helm's own Go SDK (helm-python-sdk bundles libhelm_c: no helm binary can be
# downloaded here) and the Kubernetes OpenAPI schemas (kubernetes-validate), for
# agent/tests/packaging.rs: the chart is rendered and linted by Helm and every object is
# validated against the Kubernetes 1.33 schema.
k8s="$root/target/tools/k8s"
if [ ! -x "$k8s/bin/python" ] || ! "$k8s/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  log "installing helm-python-sdk and kubernetes-validate (PyPI) into target/tools/k8s"
  python3 -m venv "$k8s"
  "$k8s/bin/pip" install -q helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML
fi
# promtool (Debian's prometheus package) checks the chart's alerting rules in agent/tests/observability.rs.
# Only the binary is unpacked into target/tools: installing the package would start a Prometheus server.
promtool="$root/target/tools/prometheus/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
  log "unpacking promtool (Debian prometheus) into target/tools/prometheus"
  deb_dir="$root/target/tools/debs"
  mkdir -p "$deb_dir"
  (cd "$deb_dir" && apt-get download -q prometheus)
  mkdir -p "$root/target/tools/prometheus"
  dpkg-deb --fsys-tarfile "$(ls -t "$deb_dir"/prometheus_*.deb | head -1)" |
    tar -x -C "$root/target/tools/prometheus" ./usr/bin/promtool
fi
log "ready"
