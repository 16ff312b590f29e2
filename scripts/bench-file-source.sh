#!/usr/bin/env bash
# End-to-end throughput of the real binary: file source -> blackhole sink (default) or -> loki
# sink -> loki-receiver in another process, 100-byte lines. Prints lines/s, MB/s, CPU-seconds per
# million lines and peak RSS (VmHWM) of the shipper (the receiver's own CPU is not counted).
# Usage: scripts/bench-file-source.sh [LINES] [blackhole|loki]
#        (default 5,000,000 lines, blackhole; needs ~LINES*100 bytes in /tmp)
#        SHIPPER=path/to/log-capturer measures that binary instead of building this checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-5000000}
sink=${2:-blackhole}
port=18499
receiver_port=18498
if [ -z "${SHIPPER:-}" ]; then
    cargo build --release --quiet --workspace --bins
    SHIPPER=./target/release/log-capturer
fi
work=$(mktemp -d)
pid=""
receiver_pid=""
trap 'kill $pid $receiver_pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/in"
python3 - "$work/in/bench.log" "$lines" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
pad = "." * 84
with open(path, "w", buffering=1 << 20) as f:
    for i in range(n):
        f.write(f"seq={i:010d} {pad}\n")
PY
if [ "$sink" = loki ]; then
    ./target/release/loki-receiver --listen "127.0.0.1:$receiver_port" --require-tenant false \
        --ingestion-rate-mb 1000000 --ingestion-burst-size-mb 1000000 2>"$work/receiver.log" &
    receiver_pid=$!
    until curl -sf "127.0.0.1:$receiver_port/stats" >/dev/null; do sleep 0.05; done
    sink_config="{type: loki, inputs: [app], endpoint: \"http://127.0.0.1:$receiver_port\", labels: {job: bench}}"
else
    sink_config="{type: blackhole, inputs: [app]}"
fi
cat > "$work/config.yaml" <<YAML
data_dir: $work/data
api: {listen: "127.0.0.1:$port"}
sources:
  app: {type: file, include: ["$work/in/*.log"], read_from: beginning}
sinks:
  out: $sink_config
YAML
start=$(date +%s.%N)
"$SHIPPER" run --config "$work/config.yaml" 2>"$work/stderr.log" &
pid=$!
while :; do
    if [ "$sink" = loki ]; then
        done_lines=$(curl -s "127.0.0.1:$receiver_port/stats" 2>/dev/null \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted_entries"])' 2>/dev/null || true)
    else
        done_lines=$(curl -s "127.0.0.1:$port/metrics" 2>/dev/null \
            | awk '/^log_capturer_logs_processed_total\{component="out"\}/ {print $2}')
    fi
    if [ -n "$done_lines" ] && [ "${done_lines%.*}" -ge "$lines" ]; then break; fi
    kill -0 "$pid" 2>/dev/null || { echo "log-capturer exited"; cat "$work/stderr.log"; exit 1; }
    sleep 0.05
done
end=$(date +%s.%N)
ticks=$(getconf CLK_TCK)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
python3 - "$lines" "$start" "$end" "$utime" "$stime" "$ticks" "$hwm_kb" "$sink" <<'PY'
import sys
n, start, end, ut, st, tck, hwm = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
wall = end - start
cpu = (ut + st) / tck
print(f"lines            {n} ({sys.argv[8]})")
print(f"wall             {wall:.2f} s (includes start-up and 50 ms polling)")
print(f"lines/s          {n / wall / 1e6:.2f} M")
print(f"MB/s             {n * 100 / wall / 1e6:.0f}")
print(f"CPU              {cpu:.2f} s ({cpu / (n / 1e6):.3f} CPU-s per million lines)")
print(f"peak RSS         {hwm / 1024:.1f} MiB")
PY
