"""The `pii` step of `tailor data prepare`: find personal data and secrets, then redact or drop.

`find_pii(text)` finds e-mails, phone numbers, card numbers (Luhn-checked), IBANs (mod-97
checked), US SSNs, IP addresses, API keys and secrets, and URLs that carry a password.
`redact(text)` swaps each for a typed placeholder such as `[EMAIL]`. Both are plain functions
with precompiled patterns, so server traces can be redacted with them too.

Each rule finds candidates with a regex, then a check accepts, trims or rejects each one. Where
candidates overlap, the longer one wins (a card number is not also a phone number), and on equal
length the rule listed first wins: the specific checksummed types come before the loose ones.
"""

import ipaddress
import math
import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal

from pydantic import Field

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
    """`text` with each match replaced by `[TYPE]`, and the number replaced per type.

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


class Pii(Step):
    """Redact PII in every free-text field of any record kind, or quarantine records that have any."""

    name = "pii"

    class Params(StepParams):
        mode: Literal["redact", "drop"] = Field("redact", description="redact: replace each match with [TYPE] and keep the record; drop: quarantine the record as pii:<TYPE>.")
        types: list[PiiType] | None = Field(None, description=f"PII types to act on; null means all of {', '.join(TYPES)}.")

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if self.p.mode == "drop":
                found = find_pii(record.joined(), self.p.types)
                self.stats.update(m.type for m in found)
                if found:
                    self.drop(record, f"pii:{found[0].type}")
                    continue
                yield record
            else:
                yield self._redact(record)

    def _redact(self, record: Record) -> Record:
        texts = record.texts()
        done = {t: redact(t, self.p.types) for t in set(texts)}
        counts = sum((done[t][1] for t in texts), Counter())
        if not counts:
            return record
        self.stats.update(counts)
        out = record.map_texts(lambda t: done[t][0])
        out.meta = {**record.meta, "pii": dict(sorted(counts.items()))}  # a new dict: map_texts shares meta
        return out
