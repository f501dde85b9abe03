"""The `pii` step: every planted PII string in the example project is redacted, checksummed types
are only redacted when the checksum holds, and ordinary numbers, hashes and paths are left alone.
Person names are found by the embedded NER model (en-core-web-md, fetched on first use), in data
through the real pipeline, in traces through a real server on loopback, and in feedback."""

import json
import time
from collections import Counter

import pytest
from pydantic import ValidationError

from tailorlm.data.record import Record
from tailorlm.data.steps.ner import plausible_name
from tailorlm.data.steps.pii import Pii, Redactor, find_pii, redact
from tailorlm.quickstart import example_dir
from tests.serve_fixtures import project, start  # noqa: F401  (a real server on loopback)

SUPPORT = example_dir("support")
PLANTED = json.loads((SUPPORT / "planted.json").read_text())
TICKETS = {t["id"]: t for t in map(json.loads, (SUPPORT / "tickets.jsonl").read_text().splitlines())}
PLANTED_TYPE = {"email": "EMAIL", "phone": "PHONE", "card": "CREDIT_CARD", "iban": "IBAN", "ip": "IP_ADDRESS"}

FOUND = [
    ("EMAIL", "marek.novak@example.com"),
    ("EMAIL", "priya.s@mail.example.co.uk"),
    ("PHONE", "+44 7700 900417"),
    ("PHONE", "(555) 123-4567"),
    ("PHONE", "555-123-4567"),
    ("PHONE", "555.123.4567"),
    ("PHONE", "+1 555 123 4567"),
    ("PHONE", "+1 (415) 555-0134"),
    ("PHONE", "020 7946 0874"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "4111-1111-1111-1111"),
    ("CREDIT_CARD", "5555555555554444"),
    ("CREDIT_CARD", "3782 822463 10005"),
    ("IBAN", "DE84 3704 0044 6139 0977 02"),
    ("IBAN", "GB80WEST79743396456622"),
    ("SSN", "123-45-6789"),
    ("IP_ADDRESS", "203.0.113.47"),
    ("IP_ADDRESS", "2001:db8::1"),
    ("IP_ADDRESS", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("SECRET", "sk_live_cs3876rmr9P2JCOtn2MMgCuW"),
    ("SECRET", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
    ("SECRET", "kb_live_mIZOL25s212dO8cVx8k6IXbT"),
    ("SECRET", "sk-proj-abcdEFGH1234ijklMNOP5678qrst"),
    ("SECRET", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("SECRET", "xoxb-1234567890-abcdEFGHijkl"),
    ("SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("SECRET", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
    ("SECRET", "glpat-abcdefghij1234567890"),
    ("SECRET", "aB3dE5gH7jK9mN1pQ3rS5tU7"),  # no known prefix: caught by entropy
    ("URL_WITH_CREDENTIALS", "postgres://admin:hunter2@db.internal:5432/prod"),
]


@pytest.mark.parametrize("type_,value", FOUND)
def test_each_type_is_found_and_removed(type_, value):
    text, counts = redact(f"Details: {value}. Thanks")
    assert value not in text
    assert text == f"Details: [{type_}]. Thanks"
    assert counts == Counter({type_: 1})


UNTOUCHED = [
    "Agent version 4.2.3 on RHEL 9, and 1.2.3.4.5 is a build number",
    "Can we roll back to before 2024-03-15 or 15.03.2024?",
    "We were charged $1,234.56 and then $1,428 on Monday",
    "Tickets T0001 and T0382, order 123456, invoice INV-2024-19240, exp 09/27, KB-4011",
    "Ubuntu 22.04 with Python311WindowsInstaller64 and KeelboxAgent42Setup64bit installed",
    "internationalization documentation is straightforward",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 and commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "see https://app.keelbox.io/items/123e4567-e89b-12d3-a456-426614174000/view",
    "/usr/local/lib/python3.11/site-packages/keelbox_agent/sync_engine_v2.py",
    "card 4111 1111 1111 1112 fails Luhn",  # one digit off a valid test card
    "IBAN DE84 3704 0044 6139 0977 03 has a bad checksum",
    "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
    "256.1.1.1 is no address, 10:30:00 is a time, std::vector and a :: b are code",
]


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_text_is_untouched(text):
    assert redact(text) == (text, Counter())


def test_counts_per_type_are_exact():
    text = ("Mail a@example.com or b@example.org, call +44 7700 900417, pay with 5555555555554444, "
            "from 10.0.0.7 and 10.0.0.8, key sk_live_cs3876rmr9P2JCOtn2MMgCuW")
    out, counts = redact(text)
    assert counts == Counter(EMAIL=2, PHONE=1, CREDIT_CARD=1, IP_ADDRESS=2, SECRET=1)
    assert out.count("[EMAIL]") == 2 and out.count("[IP_ADDRESS]") == 2
    assert redact(out) == (out, Counter())  # placeholders are not PII themselves


def test_longer_match_wins_and_matches_do_not_overlap():
    text = "db https://bob:s3cret@db.example.com/x, card 4000 0566 5566 5556, iban NL11 INGB 9791 2639 21"
    matches = find_pii(text)
    assert [m.type for m in matches] == ["URL_WITH_CREDENTIALS", "CREDIT_CARD", "IBAN"]
    assert all(a.end <= b.start for a, b in zip(matches, matches[1:]))
    assert [text[m.start:m.end] for m in matches] == [m.value for m in matches]
    assert redact(text)[0] == "db [URL_WITH_CREDENTIALS], card [CREDIT_CARD], iban [IBAN]"


def test_types_limits_what_is_redacted():
    out, counts = redact("a@example.com, 555-123-4567, 4111 1111 1111 1111", types=["EMAIL", "PHONE"])
    assert out == "[EMAIL], [PHONE], 4111 1111 1111 1111"
    assert counts == Counter(EMAIL=1, PHONE=1)


def test_every_planted_ticket_pii_is_redacted_and_other_tickets_are_untouched():
    planted = {p["id"]: p["items"] for p in PLANTED["tickets"]["pii"]}
    for id_, ticket in TICKETS.items():
        text = ticket["messages"][0]["content"]
        out, counts = redact(text)
        items = planted.get(id_, [])
        for item in items:
            assert item["value"] not in out, id_
        assert counts == Counter(PLANTED_TYPE[i["type"]] for i in items), id_


def test_every_planted_doc_pii_is_redacted():
    for path, values in PLANTED["docs"]["pii"].items():
        text = (SUPPORT / path).read_text()
        out, counts = redact(text)
        assert values and all(v in text for v in values)
        for value in values:
            assert value not in out
        assert counts["SECRET"] == 2 and counts["IP_ADDRESS"] == 2  # the relay address is written twice


def chat(id_, user, assistant="billing", **meta):
    return Record(id_, "chat", {"messages": [{"role": "user", "content": user},
                                             {"role": "assistant", "content": assistant}]}, dict(meta))


def test_step_redacts_user_and_assistant_and_keeps_roles():
    step = Pii()
    record = chat("r1", "I am marek.novak@example.com, card 4111 1111 1111 1111",
                  "Thanks, we will call +1 312-555-0187", source="tickets")
    [out] = list(step([record]))
    assert [m["role"] for m in out.content["messages"]] == ["user", "assistant"]
    assert out.content["messages"][0]["content"] == "I am [EMAIL], card [CREDIT_CARD]"
    assert out.content["messages"][1]["content"] == "Thanks, we will call [PHONE]"
    assert out.meta == {"source": "tickets", "pii": {"CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1}}
    assert "marek.novak@example.com" in record.content["messages"][0]["content"]  # input not mutated
    assert record.meta == {"source": "tickets"}
    assert step.stats == Counter(EMAIL=1, CREDIT_CARD=1, PHONE=1)
    assert step.kept == 1 and not step.dropped


@pytest.mark.parametrize("kind,content", [
    ("preference", {"prompt": "Mail a@example.com", "chosen": "Sure, a@example.com", "rejected": "Call 555-123-4567"}),
    ("text", {"text": "Relay at 198.51.100.23 uses a@example.com"}),
    ("eval", {"input": [{"role": "user", "content": "I'm a@example.com"}], "reference": "Call 555-123-4567", "labels": ["x"]}),
])
def test_step_redacts_every_record_kind(kind, content):
    [out] = list(Pii()([Record("r", kind, content)]))
    joined = out.joined()
    assert "a@example.com" not in joined and "555-123-4567" not in joined and "198.51.100.23" not in joined
    assert sum(out.meta["pii"].values()) == sum(redact(t)[1].total() for t in Record("r", kind, content).texts())


def test_step_keeps_clean_records_as_they_are():
    record = chat("clean", "Agent 4.2.3 crashes since 2024-03-15, ticket T0001")
    [out] = list(Pii()([record]))
    assert out is record and "pii" not in out.meta


def test_drop_mode_quarantines_with_the_first_type_and_accounts_for_every_record():
    records = [chat(id_, t["messages"][0]["content"]) for id_, t in TICKETS.items()]
    step = Pii(mode="drop", names="off")  # the planted structured kinds; names have their own tests
    quarantined = []
    step.sink = lambda record, name, reason: quarantined.append((record.id, name, reason))
    kept = list(step(records))
    planted = {p["id"]: p["items"] for p in PLANTED["tickets"]["pii"]}
    assert sorted(id_ for id_, _, _ in quarantined) == sorted(planted)
    assert {id_ for id_, _, _ in quarantined}.isdisjoint(r.id for r in kept)
    assert step.kept + sum(step.dropped.values()) == len(records) == len(kept) + len(quarantined)
    reasons = {id_: reason for id_, name, reason in quarantined if name == "pii"}
    assert reasons["T0338"] == "pii:EMAIL"  # the e-mail comes before the phone in that ticket
    assert reasons["T0245"] == "pii:CREDIT_CARD" and reasons["T0052"] == "pii:PHONE"


def test_params_are_checked():
    assert Pii(types=["EMAIL"]).params == {"mode": "redact", "types": ["EMAIL"], "names": "ner", "entities": ["PERSON"],
                                           "pseudonyms": False, "allow": [], "ner_model": "en-core-web-md"}
    with pytest.raises(ValidationError):
        Pii(entities=["PASSPORT"])
    with pytest.raises(ValidationError):
        Pii(types=["PASSPORT"])
    with pytest.raises(ValidationError):
        Pii(mode="mask")
    with pytest.raises(ValidationError):
        Pii(typo=True)


def test_a_megabyte_is_redacted_in_well_under_a_second():
    tickets = (SUPPORT / "tickets.jsonl").read_text()
    text = (tickets * (1_000_000 // len(tickets) + 1))[:1_000_000]
    start = time.perf_counter()
    out, counts = redact(text)
    assert time.perf_counter() - start < 1.0
    assert "4111 1111 1111 1111" not in out and counts["EMAIL"] > 0


# --- names: the NER model -------------------------------------------------------------------------

def test_names_are_redacted_and_structured_kinds_still_win():
    out, counts = Redactor(names="ner").redact(["Hello, I am Johanna Mertens, mail johanna.mertens@example.com"])
    assert out == ["Hello, I am [PERSON], mail [EMAIL]"]
    assert counts == Counter(PERSON=1, EMAIL=1)
    assert Redactor(names="off").redact(["Hello, I am Johanna Mertens"])[0] == ["Hello, I am Johanna Mertens"]


def test_a_name_found_once_is_redacted_wherever_it_stands_in_the_document():
    # The reply was cut off mid-name: the model alone does not find "Johanna Mert".
    out, _ = Redactor(names="ner").redact(["Hello, I am Johanna Mertens", "Hello Johanna! I am Johanna Mert"])
    assert out == ["Hello, I am [PERSON]", "Hello [PERSON]! I am [PERSON]"]


def test_pseudonyms_are_consistent_within_a_document_and_start_over_in_the_next():
    r = Redactor(names="ner", pseudonyms=True)
    out, counts = r.redact(["Hi, I am Johanna Mertens and my colleague is Piet de Vries.", "Thanks Johanna. Piet will call."])
    assert out == ["Hi, I am Person 1 and my colleague is Person 2.", "Thanks Person 1. Person 2 will call."]
    assert counts == Counter(PERSON=4)
    assert r.redact(["Piet de Vries wrote back."])[0] == ["Person 1 wrote back."]


def test_allowlist_keeps_the_support_address_and_product_names():
    r = Redactor(names="ner", entities=["PERSON", "ORG"], allow=["support@keelbox.io", "Keelbox"])
    text = "Dear Keelbox team, I am Johanna Mertens from Siemens; write to support@keelbox.io or jm@siemens.example"
    [out], counts = r.redact([text])
    assert out == "Dear Keelbox team, I am [PERSON] from [ORG]; write to support@keelbox.io or [EMAIL]"
    assert "support@keelbox.io" not in Redactor(names="ner").redact([text])[0][0]  # without the allowlist


def test_organisations_and_places_are_opt_in():
    text = ["Johanna Mertens works for Siemens in Munich."]
    assert Redactor(names="ner").redact(text)[0] == ["[PERSON] works for Siemens in Munich."]
    assert Redactor(names="ner", entities=["PERSON", "ORG", "LOCATION"]).redact(text)[0] == \
        ["[PERSON] works for [ORG] in [LOCATION]."]


@pytest.mark.parametrize("text,ok", [("Johanna Mertens", True), ("O'Brien", True), ("Björn Stenberg", True),
                                     ("gcloud", False), ("INDEX_ENDPOINT", False), ("DESCRIPTION", False),
                                     ("Python3", False)])
def test_what_the_model_mistakes_for_people_in_technical_text_is_not_a_name(text, ok):
    assert plausible_name(text) is ok


def test_greetings_and_sign_offs_stay_beside_the_name():
    out, _ = Redactor(names="ner").redact(["Cheers, Yuki", "Dear Sir or Madam, the sync fails. BR Ingrid Holm"])
    assert out == ["Cheers, [PERSON]", "Dear Sir or Madam, the sync fails. BR [PERSON]"]


def test_a_missing_model_says_what_to_install_or_fetch(tmp_path, monkeypatch):
    from tailorlm.data.steps import ner
    from tailorlm.errors import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="unknown NER model 'nope'.*en-core-web-md"):
        ner.load("nope")
    ner.load.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "spacy", None)  # as if spaCy were not installed
    with pytest.raises(ModelNotAvailable, match=r"pip install 'spacy>=3.8,<3.9'.*tailor models pull en-core-web-md.*names: off"):
        Redactor(names="ner").redact(["Hello, I am Johanna Mertens"])
    ner.load.cache_clear()


def test_names_are_redacted_in_data_through_the_real_pipeline(tmp_path):
    from tailorlm.data.pipeline import prepare
    from tailorlm.data.versions import load_records
    from tailorlm.project import Project

    root = tmp_path / "p"
    root.mkdir()
    rows = [{"messages": [{"role": "user", "content": f"Hello, my name is {name} and the sync of folder {i} fails. "
                                                      "Please write to support@keelbox.io about it."},
                          {"role": "assistant", "content": f"Thanks {name.split()[0]}, Keelbox support will look at it."}]}
            for i, name in enumerate(["Johanna Mertens", "Marek Novak", "Priya Raman", "Piet de Vries"])]
    (root / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "tailor.yaml").write_text(
        "name: p\ntask: {description: Triage tickets.}\nsources:\n  - {name: tickets, path: tickets.jsonl, kind: chat}\n"
        "data:\n  pii: {pseudonyms: true, allow: [support@keelbox.io, Keelbox]}\n"
        "  steps: [validate: {}, pii: {}]\n")
    [manifest] = prepare(Project.load(root))
    records = load_records(Project.load(root), manifest)
    assert len(records) == 4
    for record, row in zip(sorted(records, key=lambda r: r.joined()), sorted(rows, key=lambda r: json.dumps(r))):
        user, assistant = (m["content"] for m in record.content["messages"])
        assert "Person 1" in user and assistant.startswith("Thanks Person 1, Keelbox support")
        assert "support@keelbox.io" in user
        assert record.meta["pii"] == {"PERSON": 2}
    text = "\n".join(r.joined() for r in records)
    for name in ("Johanna", "Mertens", "Marek", "Novak", "Priya", "Raman", "Piet", "Vries"):
        assert name not in text
    step = next(s for s in manifest["steps"] if s["step"] == "pii")
    assert step["params"]["pseudonyms"] is True and step["params"]["ner_model"] == "en-core-web-md"
    assert step["stats"] == {"PERSON": 8}


def test_names_are_redacted_in_traces_and_feedback_on_a_real_server(tmp_path, start):
    import httpx

    from tests.serve_fixtures import client_for, write_project

    project = write_project(tmp_path / "acme", extra="data:\n  pii: {allow: [support@acme.example]}\n")
    url, _ = start(project=project)
    r = client_for(url).chat.completions.create(model="acme:zero_shot", max_tokens=4, messages=[
        {"role": "user", "content": "Hello, I am Johanna Mertens. Please answer to support@acme.example, not jm@web.example"}])
    row = project.store.select("traces", id=r.id)[0]
    request = json.loads(row["request"])["messages"][0]["content"]
    assert request == "Hello, I am [PERSON]. Please answer to support@acme.example, not [EMAIL]"
    sent = httpx.post(f"{url}/feedback", json={"trace_id": r.id, "thumbs": "down",
                                               "correction": "Tell Johanna Mertens to mail support@acme.example",
                                               "comment": "Johanna Mertens was not helped"})
    assert sent.status_code == 200, sent.text
    rows = {f["kind"]: f for f in project.store.select("feedback", trace_id=r.id)}
    assert rows["correction"]["value"] == "Tell [PERSON] to mail support@acme.example"
    assert rows["thumbs"]["comment"] == "[PERSON] was not helped"
