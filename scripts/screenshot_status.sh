#!/usr/bin/env bash
# docs/status-page.png: the status page of tfgate in front of the local model server, after a
# few calls, as headless Chromium draws it. Ports are the kernel's (port 0), read from the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
wait_for() {  # FILE TEXT: the rest of the first line of FILE after TEXT, once it is there
    for _ in $(seq 600); do
        line=$(grep -m1 -o "$2[^ ]*" "$1" 2>/dev/null || true)
        [ -n "$line" ] && { echo "${line#"$2"}"; return; }
        sleep 0.2
    done
    echo "timed out waiting for '$2' in $1" >&2; exit 1
}
"$PY" -m tfgate_model_server --model-config models/models.config --host 127.0.0.1 --port 0 \
    >"$tmp/ms.out" 2>"$tmp/ms.err" & pids+=($!)
backend=$(wait_for "$tmp/ms.out" "model-server listening on ")
"$PY" -m tfgate serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --backend "$backend" \
    --config config/tfgate.toml >"$tmp/gw.out" 2>"$tmp/gw.err" & pids+=($!)
http="http://$(wait_for "$tmp/gw.out" "tfgate HTTP on ")"
for i in 1 2 3 4 5; do
    curl -s -d '{"inputs": {"x": {"floats": [1, 2]}}}' \
        "$http/tfgate/v1/models/half_plus_two:predict" >/dev/null
done
curl -s -d '{"inputs": {"x": {"strings": ["a"]}}}' \
    "$http/tfgate/v1/models/half_plus_two:predict" >/dev/null
chromium --headless --disable-gpu --no-sandbox --user-data-dir="$tmp/profile" \
    --hide-scrollbars --window-size=1200,900 --screenshot=docs/status-page.png "$http/" \
    2>/dev/null
echo "docs/status-page.png ($(stat -c %s docs/status-page.png) bytes)"
