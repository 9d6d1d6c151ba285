#!/usr/bin/env bash
# Runs warden on the bundled example policy (config/example.yaml) on this
# machine: installs what is missing, builds, creates the demo cgroups
# (warden-demo/training/job-1, warden-demo/inference/server-1), starts the
# agent, shows a few allowed and denied flows, prints `warden status`, and
# keeps the agent running (events on stdout) until Ctrl-C.
# `scripts/example.sh --exit` stops after the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p warden --bins

bin=target/release
cg2=$(awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo)
[ -n "$cg2" ] || { echo "no cgroup2 mount" >&2; exit 1; }
demo="$cg2/warden-demo"
mkdir -p "$demo/training/job-1" "$demo/inference/server-1"
sock=$(mktemp -d)/warden.sock
# File segments of the example live on a tmpfs of their own, so the fanotify
# fallback (used where BPF-LSM is not active) marks only that filesystem.
files=/tmp/warden-demo
mkdir -p "$files"
mountpoint -q "$files" || mount -t tmpfs -o size=16m warden-demo "$files"
mkdir -p "$files/datasets/imagenet" "$files/models/llama"
echo "pixels" > "$files/datasets/imagenet/batch-0001"
echo "weights" > "$files/models/llama/shard-0001"
# Two GPU device nodes (195:0, 195:1). Without a GPU no driver answers, so an
# allowed open ends in "No such device or address" and a denied one in EPERM.
mkdir -p "$files/dev"
for i in 0 1; do [ -e "$files/dev/nvidia$i" ] || mknod -m 666 "$files/dev/nvidia$i" c 195 "$i"; done

python3 - <<'PY' &
# Demo listeners for the two local segments (object-store, tenant-b).
import socket, threading
def serve(addr):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for a in [("127.0.0.2", 9000), ("127.0.0.3", 9000)]:
    threading.Thread(target=serve, args=(a,), daemon=True).start()
threading.Event().wait()
PY
listeners=$!

"$bin/warden" agent --config config/example.yaml --socket "$sock" &
agent=$!
cleanup() {
  kill "$agent" "$listeners" 2>/dev/null || true
  wait "$agent" 2>/dev/null || true
  # The demo's programs stay attached after the agent stops (pinned, as in
  # production); the demo removes them.
  "$bin/warden" uninstall --cgroup-root warden-demo --socket "$sock" >/dev/null 2>&1 || true
  rmdir "$demo/training/job-1" "$demo/training" "$demo/inference/server-1" "$demo/inference" "$demo" 2>/dev/null || true
  umount "$files" 2>/dev/null || true
}
trap cleanup EXIT
until "$bin/warden" status --socket "$sock" >/dev/null 2>&1; do
  kill -0 "$agent" 2>/dev/null || { echo "agent failed to start" >&2; exit 1; }
  sleep 0.2
done

probe() { # cgroup description addr port
  local out
  out=$("$bin/warden-netprobe" --cgroup "$demo/$1" --linger-ms 100 tcp "$3" "$4" || true)
  printf '\033[1m%-38s\033[0m %-22s -> %s\n' "$2" "$3:$4" "$out" >&2
}
sleep 0.3
echo >&2
probe training/job-1   "trainer -> object-store"      127.0.0.2 9000
probe inference/server-1 "inference -> object-store"  127.0.0.2 9000
probe training/job-1   "trainer -> tenant-b"          127.0.0.3 9000
probe .                "unidentified -> object-store" 127.0.0.2 9000
probe inference/server-1 "inference -> metadata-api"  169.254.169.254 80
fprobe() { # cgroup description op path
  local out
  out=$("$bin/warden-fileprobe" --cgroup "$demo/$1" --linger-ms 50 "$3" "$4" || true)
  printf '\033[1m%-38s\033[0m %-22s -> %s\n' "$2" "$3 ${4#$files/}" "$out" >&2
}
fprobe training/job-1     "trainer reads a dataset"       read  "$files/datasets/imagenet/batch-0001"
fprobe inference/server-1 "inference reads a dataset"     read  "$files/datasets/imagenet/batch-0001"
fprobe training/job-1     "trainer writes a checkpoint"   write "$files/models/llama/shard-0001"
fprobe inference/server-1 "inference reads model weights" read  "$files/models/llama/shard-0001"
fprobe inference/server-1 "inference overwrites weights"  write "$files/models/llama/shard-0001"
fprobe training/job-1     "trainer opens its GPU 0"       write "$files/dev/nvidia0"
fprobe training/job-1     "trainer opens GPU 1"           write "$files/dev/nvidia1"
fprobe inference/server-1 "inference opens GPU 0"         write "$files/dev/nvidia0"
sleep 0.3
echo >&2
"$bin/warden" status --socket "$sock" >&2
echo >&2

if [ "${1:-}" = "--exit" ]; then
  exit 0
fi
echo "agent running (events above as JSON lines); Ctrl-C to stop" >&2
wait "$agent"
