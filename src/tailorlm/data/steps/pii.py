"""The `pii` step of `tailor data prepare`: find personal data and secrets, then redact or drop.

Two layers, one result:
- `find_pii(text)` finds the structured kinds with regexes: e-mails, phone numbers, card numbers
  (Luhn-checked), IBANs (mod-97 checked), US SSNs, IP addresses, API keys and secrets, and URLs
  that carry a password. `redact(text)` swaps each for a typed placeholder such as `[EMAIL]`.
- `Redactor` adds person names (and, opt-in, organisations and places) found by the offline NER
  model in `ner.py`, an allowlist (`data.pii.allow`: the company's own support address and
  product names stay), and consistent pseudonyms per document (`Person 1`, `Person 2`). The step
  and trace redaction (`serve/traces.py`) both use it, configured from `data.pii`.

Each regex rule finds candidates, then a check accepts, trims or rejects each one. Where
candidates overlap, the longer one wins (a card number is not also a phone number), and on equal
length the rule listed first wins: the specific checksummed types come before the loose ones.
A name the NER model finds is dropped where it overlaps a regex match (an e-mail's local part).
"""

import ipaddress
import math
import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal

from pydantic import Field

from tailorlm.config import PiiConfig
from tailorlm.data.record import Record
from tailorlm.data.steps.base import Step, StepParams

PiiType = Literal["URL_WITH_CREDENTIALS", "EMAIL", "IBAN", "CREDIT_CARD", "SSN", "PHONE", "IP_ADDRESS", "SECRET"]


@dataclass(frozen=True, slots=True)
class PiiMatch:
    type: str
    start: int
    end: int
    value: str


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(s: str) -> str | None:
    digits = re.sub(r"[ -]", "", s)
    # All-zero runs pass Luhn; a real card never is one.
    return s if 13 <= len(digits) <= 19 and digits.strip("0") and _luhn(digits) else None


def _iban(s: str) -> str | None:
    # The grouped pattern may swallow a following capitalised word ("... 0977 02 ASAP"), so drop
    # trailing groups until the checksum holds.
    parts = s.split(" ")
    while parts:
        compact = "".join(parts)
        moved = compact[4:] + compact[:4]
        if 15 <= len(compact) <= 34 and int("".join(str(int(c, 36)) for c in moved)) % 97 == 1:
            return " ".join(parts)
        if len(parts) <= 3:
            return None
        parts.pop()
    return None


def _phone(s: str) -> str | None:
    # Fewer than 7 digits is an order or ticket number; more than 15 is longer than E.164 allows.
    return s if 7 <= sum(c.isdigit() for c in s) <= 15 else None


def _ip(s: str) -> str | None:
    # A bare `::` is punctuation, and `10:30:00` a time; both are common, so skip them cheaply.
    if not any(c.isalnum() for c in s) or (":" in s and "::" not in s and s.count(":") != 7):
        return None
    try:
        ipaddress.ip_address(s)  # octets 0-255, no leading zeros, IPv6 groups and `::` rules
    except ValueError:
        return None
    return s


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _kind(c: str) -> int:
    return 0 if c.isdigit() else 1 if c.islower() else 2


def _random_token(s: str) -> str | None:
    """A run of 20+ letters and digits that looks random rather than written.

    It must mix letters and digits, not be hexadecimal (git shas, sha256 digests and UUID parts
    are identifiers, not secrets), carry at least 3.5 bits of entropy per character, and switch
    between lower case, upper case and digits at 25% of positions or more, not counting an upper
    case letter followed by lower case (a capitalised word). Random base62 switches at about
    45%, base36 at about 40%; names such as `Python311WindowsInstaller64` at about 15%.
    """
    if not (any(c.isdigit() for c in s) and any(c.isalpha() for c in s)):
        return None
    if re.fullmatch(r"[0-9a-fA-F]+", s) or _entropy(s) < 3.5:
        return None
    kinds = [_kind(c) for c in s]
    switches = sum(a != b and (a, b) != (2, 1) for a, b in zip(kinds, kinds[1:]))
    return s if switches >= 0.25 * (len(s) - 1) else None


def _trim_url(s: str) -> str:
    return s.rstrip(".,;:!?)]}'\"")


def _accept(s: str) -> str:
    return s


# (type, pattern, check, hint): the check returns the accepted text (maybe trimmed) or None; a rule
# is skipped when its hint character is absent, which makes clean text cheap.
_RULES: list[tuple[str, re.Pattern, Callable[[str], str | None], str]] = [
    ("URL_WITH_CREDENTIALS", re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:[^\s/]*@[^\s/?#@]+[^\s<>\"']*"), _trim_url, "@"),
    ("EMAIL", re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b"), _accept, "@"),
    ("IBAN", re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z0-9])"), _iban, ""),
    # Cards start 2-6 (Mastercard, Amex, Visa, Discover...), which keeps millisecond timestamps out.
    ("CREDIT_CARD", re.compile(r"(?<![\d.,-])[2-6](?:\d{12,18}|\d{3}(?P<sep>[ -])\d{4,6}(?P=sep)\d{4,5}(?:(?P=sep)\d{1,4}){0,2})(?![\d-]|[.,]\d)"), _card, ""),
    # Areas 000, 666 and 9xx, group 00 and serial 0000 are never issued.
    ("SSN", re.compile(r"(?<![\w-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"), _accept, "-"),
    # A phone stands alone: digit groups right before or after mean a longer number (an IBAN, a card).
    ("PHONE", re.compile(r"""(?<![\w+.,/-])(?<!\d[ .-])(?:
        \+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}   # +44 7700 900417, +1 (415) 555-0134
      | \(\d{3}\)[ ]?\d{3}[ .-]\d{4}                                        # (555) 123-4567
      | \d{3}(?P<psep>[ .-])\d{3}(?P=psep)\d{4}                              # 555-123-4567, 555.123.4567
      | \(?0\d{2,4}\)?[ -]\d{3,4}[ -]?\d{3,4}                                # national: 020 7946 0874
    )(?![\w-]|[ .,/-]\d)""", re.X), _phone, ""),
    ("IP_ADDRESS", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"), _ip, "."),
    ("IP_ADDRESS", re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\w)"), _ip, ":"),
    ("SECRET", re.compile(r"""(?<![\w-])(?:
        (?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}        # Stripe
      | [a-z]{2,10}_live_[A-Za-z0-9]{20,}                  # generic <word>_live_<key>
      | sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}               # OpenAI, Anthropic
      | gh[pousr]_[A-Za-z0-9]{30,} | github_pat_[A-Za-z0-9_]{22,}
      | xox[abprs]-[A-Za-z0-9-]{10,}                       # Slack
      | (?:AKIA|ASIA)[0-9A-Z]{16}                          # AWS access key id
      | AIza[0-9A-Za-z_-]{35}                              # Google
      | glpat-[0-9A-Za-z_-]{20,}                           # GitLab
      | eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}           # JWT
    )""", re.X), _accept, ""),
    ("SECRET", re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{20,}(?![A-Za-z0-9])"), _random_token, ""),
]
TYPES: tuple[str, ...] = tuple(dict.fromkeys(t for t, *_ in _RULES))


def find_pii(text: str, types: Iterable[str] | None = None) -> list[PiiMatch]:
    """Every PII match in `text`, without overlaps, in order of position.

    >>> [(m.type, m.value) for m in find_pii("mail bo@example.com from 10.0.0.7")]
    [('EMAIL', 'bo@example.com'), ('IP_ADDRESS', '10.0.0.7')]
    """
    found = []
    for rank, (type_, pattern, check, hint) in enumerate(_RULES):
        if hint and hint not in text:
            continue
        for m in pattern.finditer(text):
            value = check(m.group())
            if value:
                found.append((-len(value), rank, m.start(), type_, value))
    # Longest first, then by rule order; keep a candidate only if it overlaps none kept so far.
    starts: list[int] = []
    kept: list[PiiMatch] = []
    for _, _, start, type_, value in sorted(found):
        end = start + len(value)
        i = bisect_left(starts, start)
        if (i > 0 and kept[i - 1].end > start) or (i < len(kept) and kept[i].start < end):
            continue
        starts.insert(i, start)
        kept.insert(i, PiiMatch(type_, start, end, value))
    # Filter after resolving, so that asking only for phones does not turn a card into a phone.
    if types is None:
        return kept
    wanted = set(types)
    return [m for m in kept if m.type in wanted]


def redact(text: str, types: Iterable[str] | None = None) -> tuple[str, Counter]:
    """`text` with each structured match replaced by `[TYPE]`, and the number replaced per type.
    Names need the NER model: use `Redactor`.

    >>> redact("card 4111 1111 1111 1111, call 555-123-4567")
    ('card [CREDIT_CARD], call [PHONE]', Counter({'CREDIT_CARD': 1, 'PHONE': 1}))
    """
    matches = find_pii(text, types)
    out, pos = [], 0
    for m in matches:
        out += [text[pos:m.start], f"[{m.type}]"]
        pos = m.end
    out.append(text[pos:])
    return "".join(out), Counter(m.type for m in matches)


ENTITY_TYPES = ("PERSON", "ORG", "LOCATION")
_PSEUDONYM = {"PERSON": "Person", "ORG": "Organisation", "LOCATION": "Location"}


class Redactor:
    """Finds and replaces PII in texts: the regex kinds always, the NER entity types when `names="ner"`.

    >>> r = Redactor(names="ner", pseudonyms=True, allow=["help@acme.example"])
    >>> r.redact(["I am Johanna Mertens, mail help@acme.example", "Thanks Johanna"])[0]  # doctest: +SKIP
    ['I am Person 1, mail help@acme.example', 'Thanks Person 1']
    """

    def __init__(self, types: Iterable[str] | None = None, names: str = "off", entities: Iterable[str] = ("PERSON",),
                 pseudonyms: bool = False, allow: Iterable[str] = (), ner_model: str = "en-core-web-md"):
        self.types = None if types is None else list(types)
        self.entities = list(entities) if names == "ner" else []
        self.pseudonyms, self.ner_model = pseudonyms, ner_model
        allow = sorted({a for a in allow if a.strip()}, key=len, reverse=True)
        self._allow = re.compile("|".join(map(re.escape, allow)), re.I) if allow else None

    @classmethod
    def from_config(cls, cfg: PiiConfig, types: Iterable[str] | None = None) -> "Redactor":
        return cls(types, cfg.names, cfg.entities, cfg.pseudonyms, cfg.allow, cfg.ner_model)

    def find(self, texts: list[str]) -> list[list[PiiMatch]]:
        """Each text's matches, regex and NER together, without overlaps, in order of position."""
        found = [find_pii(t, self.types) for t in texts]
        if self.entities:
            from tailorlm.data.steps.ner import find_entities

            for text, matches, ents in zip(texts, found, find_entities(texts, self.ner_model, self.entities)):
                taken = [(m.start, m.end) for m in matches]
                names = [PiiMatch(t, a, b, text[a:b]) for a, b, t in ents if not any(a < e and s < b for s, e in taken)]
                matches[:] = sorted(matches + names, key=lambda m: m.start)
        if self._allow:
            found = [self._allowed_out(t, ms) for t, ms in zip(texts, found)]
        return found

    def _allowed_out(self, text: str, matches: list[PiiMatch]) -> list[PiiMatch]:
        if not matches:
            return matches
        spans = [m.span() for m in self._allow.finditer(text)]
        return [m for m in matches if not any(s <= m.start and m.end <= e for s, e in spans)]

    def redact(self, texts: list[str], found: list[list[PiiMatch]] | None = None) -> tuple[list[str], Counter]:
        """`texts`, one document (a record, a trace), with every match replaced; counts per type.

        With `pseudonyms`, each distinct entity becomes `Person 1`, `Person 2`... across all of
        `texts`, and a lone first or last name reuses the pseudonym of the full name it belongs to.
        A name found once is redacted wherever else it stands in the document, with the
        capitalised words that follow it: a reply cut off at "I am Johanna Mert" leaks nothing.
        """
        found = self.find(texts) if found is None else found
        if "PERSON" in self.entities:
            found = _propagate(texts, found)
        label = self._pseudonyms(found) if self.pseudonyms else {}
        out = []
        for text, matches in zip(texts, found):
            parts, pos = [], 0
            for m in matches:
                parts += [text[pos:m.start], label.get((m.type, _key(m.value)), f"[{m.type}]")]
                pos = m.end
            out.append("".join(parts) + text[pos:])
        return out, Counter(m.type for ms in found for m in ms)

    @staticmethod
    def _pseudonyms(found: list[list[PiiMatch]]) -> dict[tuple[str, str], str]:
        ents = [(m.type, _key(m.value)) for ms in found for m in ms if m.type in _PSEUDONYM]
        full = [k for k in dict.fromkeys(ents) if " " in k[1]]
        label: dict[tuple[str, str], str] = {}
        n: Counter = Counter()
        for type_, key in dict.fromkeys(ents):
            whole = next((f for f in full if f[0] == type_ and key in f[1].split()), None) if " " not in key else None
            if whole:  # "Johanna" after (or before) "Johanna Mertens": the same person
                key_of = whole
            else:
                key_of = (type_, key)
            if key_of not in label:
                n[type_] += 1
                label[key_of] = f"{_PSEUDONYM[type_]} {n[type_]}"
            label[(type_, key)] = label[key_of]
        return label


def _propagate(texts: list[str], found: list[list[PiiMatch]]) -> list[list[PiiMatch]]:
    words = {w for ms in found for m in ms if m.type == "PERSON" for w in re.findall(r"[^\W\d_]{2,}", m.value)
             if w[0].isupper()}
    if not words:
        return found
    pattern = re.compile(r"\b(?:%s)\b(?:[ ]+[^\W\d_a-z][\w'’-]*)*" % "|".join(map(re.escape, sorted(words, key=len, reverse=True))))
    out = []
    for text, matches in zip(texts, found):
        extra = [PiiMatch("PERSON", m.start(), m.end(), m.group()) for m in pattern.finditer(text)
                 if not any(m.start() < k.end and k.start < m.end() for k in matches)]
        out.append(sorted(matches + extra, key=lambda m: m.start) if extra else matches)
    return out


def _key(value: str) -> str:
    return " ".join(value.casefold().split())


class Pii(Step):
    """Redact PII in every free-text field of any record kind, or quarantine records that have any."""

    name = "pii"
    batch = 64  # records per call of the NER model: spaCy's pipe is several times faster than one call per text

    class Params(StepParams, PiiConfig):
        mode: Literal["redact", "drop"] = Field("redact", description="redact: replace each match with [TYPE] and keep the record; drop: quarantine the record as pii:<TYPE>.")
        types: list[PiiType] | None = Field(None, description=f"Structured PII types to act on; null means all of {', '.join(TYPES)}. Names follow `names` and `entities`.")

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        redactor = Redactor.from_config(self.p, self.p.types)
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) == self.batch:
                yield from self._run_batch(redactor, batch)
                batch = []
        yield from self._run_batch(redactor, batch)

    def _run_batch(self, redactor: Redactor, records: list[Record]) -> Iterator[Record]:
        texts = [r.texts() for r in records]
        unique = list(dict.fromkeys(t for ts in texts for t in ts))
        found = dict(zip(unique, redactor.find(unique)))
        for record, ts in zip(records, texts):
            matches = [found[t] for t in ts]
            if self.p.mode == "drop":
                first = next((ms[0] for ms in matches if ms), None)
                self.stats.update(m.type for ms in matches for m in ms)
                if first:
                    self.drop(record, f"pii:{first.type}")
                    continue
                yield record
            elif not any(matches):
                yield record
            else:
                new, counts = redactor.redact(ts, matches)
                self.stats.update(counts)
                it = iter(new)
                out = record.map_texts(lambda _t: next(it))
                out.meta = {**record.meta, "pii": dict(sorted(counts.items()))}  # a new dict: map_texts shares meta
                yield out
