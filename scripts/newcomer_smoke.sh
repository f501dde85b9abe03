#!/usr/bin/env bash
# The newcomer's first steps, against an installed `tailor` (issue 16): run by .ci/run in a fresh
# venv that holds only the built wheel, from a folder outside the source tree, so a file missing
# from the wheel fails here as it would for a user.
#
#   scripts/newcomer_smoke.sh VENV      # VENV/bin/tailor and VENV/bin/python are used
#
# Steps: the --help of every command; init; data add + prepare on two small sources; rag index;
# one chat answer from the embedded model; `tailor serve` answering one request over loopback HTTP;
# a user error with --json giving one JSON object and no traceback. Models come from
# TAILOR_CACHE_DIR (fetched from the package index on first use), shared with the test run.
set -euo pipefail

venv=$(cd "${1:?usage: newcomer_smoke.sh VENV}" && pwd)
tailor="$venv/bin/tailor"
py="$venv/bin/python"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
SECONDS=0
step() { echo "newcomer: $* (${SECONDS}s)"; }
fail() { echo "newcomer: FAILED: $*" >&2; exit 1; }
# Every command's stderr is kept: a traceback anywhere is a failure, even when the command succeeded.
no_traceback() { if grep -q "Traceback" "$1"; then cat "$1" >&2; fail "traceback in $2"; fi; }

where=$("$py" -c "import tailorlm, os; print(os.path.dirname(tailorlm.__file__))")
case "$where" in
  "$venv"/*) ;;
  *) fail "tailorlm imported from $where, not from the venv's install" ;;
esac

step "--help of every command"
"$py" - "$tailor" <<'EOF'
import subprocess, sys
import typer.main
from tailorlm.cli import app

def leaves(cmd, path):
    subs = getattr(cmd, "commands", None)
    yield path
    for name, sub in sorted((subs or {}).items()):
        if not getattr(sub, "hidden", False):
            yield from leaves(sub, path + [name])

paths = list(leaves(typer.main.get_command(app), []))
for path in paths:
    out = subprocess.run([sys.argv[1], *path, "--help"], capture_output=True, text=True)
    if out.returncode != 0 or "Usage:" not in out.stdout or "Traceback" in out.stderr:
        sys.exit(f"`tailor {' '.join(path)} --help` failed ({out.returncode}):\n{out.stdout}{out.stderr}")
print(f"  {len(paths)} commands and groups answer --help")
EOF

step "init"
"$tailor" init acme --description "Answer customer questions about Acme Cloud" 2> err.txt
no_traceback err.txt init
cd acme
mkdir -p docs
cat > docs/billing.md <<'EOF'
# Billing

## Plans
Acme Cloud has three plans. Starter is free for one user. Team costs 12 dollars per seat each month.
Enterprise is priced per contract and includes single sign-on and a support manager.

## Invoices
Invoices are sent on the first day of each month to the billing contact. You can download past
invoices from Settings, then Billing, then Invoice history, for as far back as your account goes.
To change the billing contact, an owner edits the address on the same page.
EOF
cat > docs/passwords.md <<'EOF'
# Passwords

## Resetting a password
To reset your password, open the sign-in page and choose "Forgot password". Acme Cloud sends a reset
link to your e-mail address; the link is valid for 30 minutes. If the message does not arrive within a
few minutes, look in your spam folder first, then ask your administrator to check that your account
uses the address you typed. After three failed attempts the account is locked for fifteen minutes.

## Two-factor authentication
Administrators can require two-factor authentication for every member under Settings, then Security.
Members then add an authenticator app the next time they sign in, and keep a set of recovery codes in
case they lose their phone. Support can reset two-factor authentication only for the account owner.
EOF
"$py" - <<'EOF'
import json
qa = [("How much does the Team plan cost?", "The Team plan costs 12 dollars per seat each month."),
      ("Where can I download an old invoice?", "Open Settings, then Billing, then Invoice history."),
      ("How do I reset my password?", "Choose Forgot password on the sign-in page; we e-mail you a link."),
      ("How long is a reset link valid?", "A password reset link is valid for 30 minutes."),
      ("Can we enforce two-factor authentication?", "Yes: an administrator can require it under Settings, Security."),
      ("Does the Starter plan cost anything?", "No, Starter is free for one user."),
      ("Which plan includes single sign-on?", "Enterprise includes single sign-on and a support manager."),
      ("When are invoices sent?", "Invoices are sent on the first day of each month to the billing contact.")]
with open("tickets.jsonl", "w") as f:
    for i, (q, a) in enumerate(qa):
        f.write(json.dumps({"id": f"t{i}", "messages": [{"role": "user", "content": q},
                                                        {"role": "assistant", "content": a}]}) + "\n")
EOF

step "data add + prepare"
"$tailor" data add docs docs/ 2> err.txt
"$tailor" data add tickets tickets.jsonl --kind chat 2>> err.txt
"$tailor" data prepare --json > prepare.json 2>> err.txt || {
  status=$?; cat prepare.json err.txt >&2
  # exit 1 means records were quarantined (and says so); a version is still written
  [ "$status" -eq 1 ] || fail "data prepare exited $status"; }
no_traceback err.txt "data prepare"
"$py" - <<'EOF'
import json
out = json.load(open("prepare.json"))
versions = {m["id"].split("@")[0]: m for m in out["datasets"]}
for name, n in (("docs", 2), ("tickets", 8)):
    kept = sum(versions[name]["splits"].values())
    assert kept == n, f"{name}: {kept} records kept of {n}: {versions[name]['dropped']}"
    print(f"  {versions[name]['id']}: {kept} kept {versions[name]['splits']}, dropped {versions[name]['dropped']}")
EOF

step "rag index"
"$tailor" rag index --json > index.json 2> err.txt || { cat err.txt >&2; fail "rag index"; }
no_traceback err.txt "rag index"
"$py" -c "import json; d = json.load(open('index.json')); print('  index:', {k: v for k, v in d.items() if not isinstance(v, (list, dict))})"

step "chat (embedded model)"
"$tailor" chat "How do I reset my password?" --max-tokens 24 --json > chat.json 2> err.txt || { cat err.txt >&2; fail "chat"; }
no_traceback err.txt chat
"$py" -c "import json; t = json.load(open('chat.json'))['text']; assert t.strip(), 'empty answer'; print('  answer:', t[:80].replace(chr(10), ' '))"

step "serve, one request over HTTP"
port=$("$py" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$tailor" serve --port "$port" > serve.log 2>&1 &
server_pid=$!
"$py" - "$port" <<'EOF' || { cat serve.log >&2; fail "serve"; }
import sys, time
import httpx
from openai import OpenAI

base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.time() + 300  # the first start loads the generator
while True:
    try:
        if httpx.get(f"{base}/health", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.time() > deadline:
        sys.exit("the server did not answer /health in 300 s")
    time.sleep(1)
client = OpenAI(base_url=f"{base}/v1", api_key="none")
names = [m.id for m in client.models.list().data]
assert "acme:zero_shot" in names, names
reply = client.chat.completions.create(model="acme:zero_shot", max_tokens=24, temperature=0,
                                       messages=[{"role": "user", "content": "How much does the Team plan cost?"}])
text = reply.choices[0].message.content
assert text and text.strip(), reply
print(f"  {reply.id}: {text[:80]!r}")
EOF
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
no_traceback serve.log serve

step "a user error with --json"
if "$tailor" data show nosuch --json > error.json 2> err.txt; then fail "data show nosuch succeeded"; fi
no_traceback err.txt "data show nosuch"
"$py" -c "import json; e = json.load(open('error.json'))['error']; assert 'nosuch' in e['message']; print('  ', e)"

step "done"
