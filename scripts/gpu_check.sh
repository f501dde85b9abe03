#!/usr/bin/env bash
# The GPU paths that CI cannot run (issue 16 part 2, item 4): QLoRA and `tailor serve --backend vllm`.
# Run by hand on a machine with an NVIDIA GPU; never by CI. Budget: under 10 minutes on one H100.
#
#   scripts/gpu_check.sh [VENV]        # default: the active Python environment
#
# 1. installs vLLM and bitsandbytes into the environment;
# 2. trains two QLoRA adapters on the shipped example (a few steps each: the step, not the quality);
# 3. serves both through `tailor serve --backend vllm` and, separately, `--backend local`;
# 4. asks both servers the same prompts at temperature 0 and prints, per adapter, how many answers
#    are identical (bf16 vLLM kernels against the local backend differ in the last bits, so a
#    differing answer is reported, not failed) and vLLM's completion tokens/s.
# Status: written without a GPU lent to its author; the first real run is its test.
set -euo pipefail
py="${1:+$1/bin/}python"
tailor="${1:+$1/bin/}tailor"
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
SECONDS=0
step() { echo "gpu_check: $* (${SECONDS}s)"; }

step "installing vllm and bitsandbytes"
"$py" -m pip install -q vllm bitsandbytes

step "the example project"
cp -r "$("$py" -c 'from tailorlm.quickstart import example_dir; print(example_dir())')" "$work/p"
"$tailor" data prepare tickets -p "$work/p" --json > /dev/null

for r in 8 16; do
  step "QLoRA run, rank $r"
  "$tailor" train sft -p "$work/p" --dataset tickets --adapter qlora --lora-r "$r" --max-steps 10 --json \
    > "$work/train-$r.json"
done
"$tailor" models versions -p "$work/p" --json > "$work/versions.json"

serve() {  # serve BACKEND PORT: start a server, wait until it answers
  "$tailor" serve -p "$work/p" --backend "$1" --port "$2" > "$work/serve-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$2/v1/models" > /dev/null && return 0
    sleep 1
  done
  tail -40 "$work/serve-$1.log" >&2; return 1
}
step "serving with vllm and local"
serve vllm 8711
serve local 8712

step "answers at temperature 0"
"$py" - "$work" <<'PY'
import json, sys, time
import httpx

work = sys.argv[1]
versions = [json.load(open(f"{work}/train-{r}.json"))["model_version"] for r in (8, 16)]
prompts = [json.loads(line)["messages"][0]["content"]
           for line in open(f"{work}/p/tickets.jsonl", encoding="utf-8").readlines()[:16]]

def ask(port, model, prompt):
    t = time.perf_counter()
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
        "model": model, "temperature": 0, "max_tokens": 48, "messages": [{"role": "user", "content": prompt}]})
    r.raise_for_status()
    body = r.json()
    return body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"], time.perf_counter() - t

for version in versions:
    same, tokens, seconds = 0, 0, 0.0
    for prompt in prompts:
        a, n, s = ask(8711, version, prompt)
        b, _, _ = ask(8712, version, prompt)
        same += a.strip() == b.strip()
        tokens, seconds = tokens + n, seconds + s
    print(f"{version}: {same}/{len(prompts)} answers identical to the local backend; "
          f"vLLM {tokens / seconds:.1f} completion tokens/s (one request at a time)")
PY
step "done"
