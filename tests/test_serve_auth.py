"""API keys (compared by hash), and logs that carry neither PII nor keys."""

import logging

import httpx
import openai
import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import client_for

KEYS = "sk-tailor-first-0123456789,sk-tailor-second-9876543210"


@pytest.fixture
def keyed(project, monkeypatch):
    monkeypatch.setenv("ACME_SERVE_KEYS", KEYS)
    project.config.serve.api_keys_env = "ACME_SERVE_KEYS"
    return project


def test_requests_need_one_of_the_configured_keys(start, keyed):
    url, app = start(project=keyed)
    ask = dict(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    for key in ("none", "sk-tailor-first", KEYS):  # wrong, a prefix, and the whole list are all refused
        with pytest.raises(openai.AuthenticationError) as e:
            client_for(url, key).chat.completions.create(**ask)
        assert e.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{url}/models").status_code == 401
    assert httpx.get(url.removesuffix("/v1") + "/metrics").status_code == 401
    assert client_for(url, "sk-tailor-second-9876543210").chat.completions.create(**ask).choices
    assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 200  # liveness needs no key
    assert httpx.get(url.removesuffix("/v1") + "/openapi.json").status_code == 200
    # Only digests are kept in memory.
    from tailorlm.serve.auth import Guard

    guard = app.middleware_stack
    while not isinstance(guard, Guard):
        guard = guard.app
    assert len(guard.key_hashes) == 2 and all(len(h) == 32 for h in guard.key_hashes)
    assert not any(k.encode() in h for k in KEYS.split(",") for h in guard.key_hashes)


def test_a_server_meant_to_need_keys_does_not_start_open(project, monkeypatch):
    from tailorlm.errors import ConfigError
    from tailorlm.serve.app import create_app

    monkeypatch.delenv("ACME_SERVE_KEYS", raising=False)
    project.config.serve.api_keys_env = "ACME_SERVE_KEYS"
    with pytest.raises(ConfigError, match="ACME_SERVE_KEYS"):
        create_app(project, pool=object())


def test_logs_carry_no_pii_and_no_keys(start, keyed, caplog):
    caplog.set_level(logging.DEBUG)
    url, _ = start(project=keyed)
    secret_mail, secret_card = "jane.doe@example.com", "4111 1111 1111 1111"
    good = client_for(url, "sk-tailor-first-0123456789")
    r = good.chat.completions.create(model="acme:zero_shot", max_tokens=4, messages=[
        {"role": "user", "content": f"My mail is {secret_mail} and card {secret_card}"}])
    list(good.chat.completions.create(model="acme:zero_shot", max_tokens=4, stream=True, messages=[
        {"role": "user", "content": f"again {secret_mail}"}]))
    with pytest.raises(openai.AuthenticationError):
        client_for(url, "sk-wrong-key-55555").chat.completions.create(model="acme:zero_shot", messages=[
            {"role": "user", "content": secret_mail}])
    with pytest.raises(openai.BadRequestError):
        good.chat.completions.create(model="acme:zero_shot", temperature=9, messages=[{"role": "user", "content": secret_mail}])
    httpx.get(f"{url}/models?email={secret_mail}", headers={"Authorization": "Bearer sk-tailor-first-0123456789"})
    good.with_options(max_retries=0).post("/feedback", cast_to=object, body={
        "trace_id": r.id, "correction": f"mail {secret_mail}"})
    # The server's log: the client libraries in this process log their own requests, which is their business.
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if r.name.split(".")[0] in ("tailorlm", "uvicorn", "fastapi", "starlette", "sqlalchemy"))
    assert r.id in text and "/v1/chat/completions" in text  # the log is useful...
    for secret in (secret_mail, secret_card, "sk-tailor-first-0123456789", "sk-wrong-key-55555", "sk-tailor-second"):
        assert secret not in text  # ...and carries nothing private
