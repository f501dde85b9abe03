"""A/B canaries on a real loopback server with the official openai client and a real SQLite store:
sticky assignment, shares, the arm in every trace, the report's numbers against hand-computed ones,
and the loop's promote and rollback decisions recorded in the alias history."""

import json
import math

import pytest

from tailorlm.loop.run import promote, run_loop
from tailorlm.serve.ab import assign, bucket, corrections, mean_rating, report, thumbs_up
from tailorlm.serve.traces import add_feedback
from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import add_version, client_for, write_project

AB = "serve:\n  ab:\n    share: 0.5\n    min_answers: 5\n"


@pytest.fixture
def canary(tmp_path, tiny_model, tokenizer):
    """A project with production (v1) and candidate (v2) versions and half the users on the candidate."""
    project = write_project(tmp_path / "acme", extra=AB)
    v1, v2 = add_version(project, "smollm2-135m-instruct", tiny_model), add_version(project, "smollm2-135m-instruct", tiny_model)
    promote(project, v1["id"])
    promote(project, v2["id"], alias="candidate")
    return project, v1["id"], v2["id"]


def _ask(client, user=None, header=None, model="acme"):
    extra = {"user": user} if user else {}
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1,
                                          extra_headers={"X-Tailor-User": header} if header else None, **extra).id


def test_assignment_is_deterministic_and_holds_the_share():
    users = [f"user-{i}" for i in range(20_000)]
    arms = [assign(u, 0.2, "acme:sft@v2") for u in users]
    assert arms == [assign(u, 0.2, "acme:sft@v2") for u in users]  # same answer every time, every process
    assert abs(arms.count("candidate") / len(users) - 0.2) < 0.01
    # A user in the 10% canary stays in it at 20%: raising the share only adds users.
    assert all(assign(u, 0.2, "acme:sft@v2") == "candidate" for u in users if assign(u, 0.1, "acme:sft@v2") == "candidate")
    # A new candidate draws a new sample of users.
    assert sum(assign(u, 0.2, "acme:sft@v3") != a for u, a in zip(users, arms)) > 4000
    assert 0 <= bucket("x", "s") < 1 and bucket("x", "s") != bucket("x", "t")


def test_the_server_splits_sticky_per_user_and_every_trace_records_its_arm(canary, start):
    project, v1, v2 = canary
    url, _ = start(project=project)
    client = client_for(url)
    users = [f"u{i}" for i in range(24)]
    ids = {u: _ask(client, user=u) for u in users}
    again = {u: _ask(client, header=u) for u in users[:8]}  # the header names the same users
    anonymous = [_ask(client) for _ in range(4)]
    explicit = _ask(client, model=f"acme:sft@v{v2[-1]}", user="u0")
    traces = {t["id"]: t for t in project.store.select("traces")}
    for u, tid in [*ids.items(), *again.items()]:
        arm = assign(u, 0.5, v2)
        assert traces[tid]["arm"] == arm
        assert traces[tid]["model_version"] == (v2 if arm == "candidate" else v1)
        assert json.loads(traces[tid]["response"])["tailor"]["arm"] == arm
    assert {traces[t]["arm"] for t in ids.values()} == {"production", "candidate"}
    assert [traces[again[u]]["arm"] for u in again] == [traces[ids[u]]["arm"] for u in again]  # sticky
    assert all(traces[t]["arm"] == assign(t, 0.5, v2) for t in anonymous)  # no user: assigned per request
    assert traces[explicit]["arm"] is None and traces[explicit]["model_version"] == v2  # outside the experiment


def _answered(project, arm_of: dict[str, str], versions: dict[str, str]):
    from tailorlm.serve.traces import Traces

    for tid, arm in arm_of.items():
        Traces(project, redact=False).record(
            tid, "acme", {"model": "acme", "messages": [{"role": "user", "content": "q"}]},
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}}]}, 200, 0.01, 3, 1,
            "/v1/chat/completions", model_version=versions[arm], arm=arm)


def test_report_numbers_match_hand_computed_values(canary, cli):
    project, v1, v2 = canary
    versions = {"production": v1, "candidate": v2}
    _answered(project, {**{f"p{i}": "production" for i in range(10)}, **{f"c{i}": "candidate" for i in range(8)}}, versions)
    # production: thumbs 6 up / 2 down, ratings 4,5,3,4, 1 correction; candidate: 2 up / 4 down, ratings 2,3,2, 3 corrections
    for i, t in enumerate("uuuuuudd"):
        add_feedback(project, f"p{i}", thumbs="up" if t == "u" else "down", redact=False)
    add_feedback(project, "p7", thumbs="up", redact=False)  # changed their mind: the latest counts -> 7 up / 1 down
    for i, r in enumerate([4, 5, 3, 4]):
        add_feedback(project, f"p{i}", rating=r, redact=False)
    add_feedback(project, "p9", correction="better", redact=False)
    for i, t in enumerate("uudddd"):
        add_feedback(project, f"c{i}", thumbs="up" if t == "u" else "down", redact=False)
    for i, r in enumerate([2, 3, 2]):
        add_feedback(project, f"c{i}", rating=r, redact=False)
    for i in range(3):
        add_feedback(project, f"c{i}", correction="fix", redact=False)
    add_feedback(project, "c0", correction="fix again", redact=False)  # one answer corrected twice counts once
    rep = json.loads(cli("ab", "report", "--project", project.root, "--json").stdout)
    assert rep["arms"]["production"] == {"version": v1, "answers": 10, "thumbs": 8, "ratings": 4, "corrections": 1}
    assert rep["arms"]["candidate"] == {"version": v2, "answers": 8, "thumbs": 6, "ratings": 3, "corrections": 3}

    th = rep["metrics"]["thumbs_up_rate"]
    assert th["production"]["value"] == 7 / 8 and th["candidate"]["value"] == 2 / 6
    z = 1.959963984540054
    lo, hi = _wilson(7, 8, z)
    assert math.isclose(th["production"]["low"], lo, rel_tol=1e-9) and math.isclose(th["production"]["high"], hi, rel_tol=1e-9)
    assert math.isclose(th["difference"], 2 / 6 - 7 / 8)
    tp, tc = 8 / 10, 3 / 8  # Agresti-Caffo: (x+1)/(n+2)
    se = math.sqrt(tp * (1 - tp) / 10 + tc * (1 - tc) / 8)
    assert math.isclose(th["low"], tc - tp - z * se) and math.isclose(th["high"], tc - tp + z * se)
    assert math.isclose(th["p_value"], _fisher_two_sided(2, 6, 7, 8), rel_tol=1e-9)
    assert math.isclose(th["p_noninferior"], 0.5 * math.erfc((tc - tp + 0.05) / se / math.sqrt(2)), rel_tol=1e-9)

    mr = rep["metrics"]["mean_rating"]
    assert mr["production"]["value"] == 4.0 and math.isclose(mr["candidate"]["value"], 7 / 3)
    vp, vc = _var([4, 5, 3, 4]), _var([2, 3, 2])
    t = (7 / 3 - 4) / math.sqrt(vc / 3 + vp / 4)
    assert math.isclose(mr["difference"], 7 / 3 - 4)
    df = (vc / 3 + vp / 4) ** 2 / ((vc / 3) ** 2 / 2 + (vp / 4) ** 2 / 3)  # Welch-Satterthwaite
    from scipy.stats import t as student

    assert math.isclose(mr["p_value"], 2 * student.sf(abs(t), df), rel_tol=1e-9)
    assert math.isclose(mr["p_noninferior"], student.sf((7 / 3 + 0.25 - 4) / math.sqrt(vc / 3 + vp / 4), df), rel_tol=1e-9)

    co = rep["metrics"]["corrections_per_100"]
    assert co["production"]["value"] == 10.0 and co["candidate"]["value"] == 37.5
    assert math.isclose(co["difference"], 27.5)
    tp, tc = 2 / 12, 4 / 10
    se = math.sqrt(tp * (1 - tp) / 12 + tc * (1 - tc) / 10)
    assert math.isclose(co["low"], 100 * (tc - tp - z * se)) and math.isclose(co["high"], 100 * (tc - tp + z * se))
    assert math.isclose(co["p_value"], _fisher_two_sided(3, 8, 1, 10), rel_tol=1e-9)
    assert math.isclose(co["p_noninferior"], 0.5 * math.erfc((0.05 - (tc - tp)) / se / math.sqrt(2)), rel_tol=1e-9)
    lo, hi = _wilson(1, 10, z)
    assert math.isclose(co["production"]["low"], 100 * lo, rel_tol=1e-9)
    assert rep["verdict"]["decision"] in ("wait", "rollback")


def _wilson(x, n, z):
    p = x / n
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def _fisher_two_sided(xa, na, xb, nb):
    """Sum of the hypergeometric probabilities no larger than the observed table's."""
    k, n = xa + xb, na + nb

    def prob(x):
        return math.comb(na, x) * math.comb(nb, k - x) / math.comb(n, k)

    observed = prob(xa)
    return sum(prob(x) for x in range(max(0, k - nb), min(k, na) + 1) if prob(x) <= observed * (1 + 1e-7))


def _var(x):
    m = sum(x) / len(x)
    return sum((v - m) ** 2 for v in x) / (len(x) - 1)


def test_statistics_at_the_edges():
    # No feedback yet in one arm: values without tests, never a decision.
    assert thumbs_up([1, 1], [], 0.05, 0.05)["p_value"] is None
    assert mean_rating([5], [4], 0.25, 0.05)["p_value"] is None
    assert corrections(0, 0, 0, 3, 5, 0.05)["p_value"] is None
    # Identical arms with plenty of answers: not different, and non-inferior at the margin.
    same = thumbs_up([1] * 180 + [0] * 20, [1] * 180 + [0] * 20, 0.05, 0.05)
    assert same["p_value"] == 1.0 and not same["significant"] and same["noninferior"]
    zero = corrections(0, 400, 0, 400, 5, 0.05)
    assert zero["p_value"] == 1.0 and zero["noninferior"]  # no corrections in either arm
    worse = corrections(2, 400, 40, 400, 5, 0.05)
    assert worse["better"] == "production" and not worse["noninferior"]


def test_loop_ab_rolls_back_a_canary_that_live_feedback_finds_worse(canary, cli):
    project, v1, v2 = canary
    versions = {"production": v1, "candidate": v2}
    _answered(project, {**{f"p{i}": "production" for i in range(20)}, **{f"c{i}": "candidate" for i in range(20)}}, versions)
    for i in range(20):
        add_feedback(project, f"p{i}", thumbs="up" if i < 18 else "down", redact=False)
        add_feedback(project, f"c{i}", thumbs="up" if i < 6 else "down", redact=False)
    out = json.loads(cli("loop", "--ab", "--project", project.root, "--json").stdout)
    assert out["kind"] == "canary" and out["rolled_back"] and not out["promoted"]
    assert out["ab"]["verdict"]["decision"] == "rollback" and out["ab"]["verdict"]["because"] == ["thumbs_up_rate"]
    assert project.store.get_alias("model", "acme", "candidate") == v1  # all traffic back on production
    assert project.store.get_alias("model", "acme", "production") == v1
    last = project.store.select("alias_history", order_by="at")[-1]
    assert (last["alias"], last["target"], last["previous"]) == ("candidate", v1, v2)
    assert last["reason"].startswith(f"ab rollback of {v2}: significantly worse on live feedback: thumbs_up_rate 0.9 -> 0.3")
    assert (project.root / out["path"]).is_file()
    with pytest.raises(Exception, match="no A/B canary is running"):
        report(project)


def test_loop_ab_waits_until_non_inferior_then_promotes_through_the_offline_gate(tmp_path, tiny_model, tiny_model_dir):
    import copy

    from peft import LoraConfig, get_peft_model

    from tailorlm.project import Project
    from tailorlm.train import registry
    from tests.helpers import extend_config
    from tests.test_ladder import make_project

    root = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n").root
    extend_config(root, {"serve": {"ab": {"share": 0.5, "min_answers": 5}}})
    project = Project.load(root)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(tiny_model), lora).save_pretrained(root / "adapter")
    # Two versions with the same weights: offline they tie exactly, so they are non-inferior at any margin > 0.
    v1, v2 = (registry.register(project, "shop", "sft", str(tiny_model_dir), None, None, adapter_path="adapter",
                                lineage={"system_prompt": "Route the ticket."})["id"] for _ in range(2))
    promote(project, v1)
    promote(project, v2, alias="candidate")
    versions = {"production": v1, "candidate": v2}
    _answered(project, {f"p{i}": "production" for i in range(3)} | {f"c{i}": "candidate" for i in range(3)}, versions)
    first = run_loop(project, ab=True, log=lambda m: None)
    assert first["ab"]["verdict"]["decision"] == "wait" and not first["promoted"] and "gate" not in first
    _answered(project, {f"p{i}": "production" for i in range(3, 300)} | {f"c{i}": "candidate" for i in range(3, 300)}, versions)
    for i in range(300):
        add_feedback(project, f"p{i}", thumbs="up" if i % 10 else "down", redact=False)
        add_feedback(project, f"c{i}", thumbs="up" if i % 10 else "down", redact=False)
    done = run_loop(project, ab=True, log=lambda m: None)
    assert done["ab"]["verdict"]["decision"] == "promote"
    assert done["gate"]["noninferior"] and all(c["delta"] == 0 for c in done["gate"]["checks"])
    assert done["promoted"] and project.store.get_alias("model", "shop", "production") == v2
    last = project.store.select("alias_history", order_by="at")[-1]
    assert last["alias"] == "production" and last["reason"].startswith("ab: non-inferior on live feedback: thumbs_up_rate")


def test_loop_ab_needs_a_share(tmp_path, tiny_model):
    from tailorlm.errors import TailorError

    project = write_project(tmp_path / "off")
    promote(project, add_version(project, "smollm2-135m-instruct", tiny_model)["id"])
    with pytest.raises(TailorError, match="serve.ab.share is 0"):
        run_loop(project, ab=True, log=lambda m: None)
