"""Device selectors: the small language a job uses to name the phones it runs on.

    all                      every phone
    soc=SM8550               equality on a fact (soc, serial, model, manufacturer, board, host, abi)
    htp_arch>=75             comparison on a numeric fact (htp_arch, sdk, battery, temperature)
    model~Galaxy             case-insensitive substring
    soc=SM8550,htp_arch>=73  terms joined by "," must all hold; "|" between groups means "or"

Parsing is strict: an unknown field, operator or malformed value is an InvalidRequest naming it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hexfleet.errors import InvalidRequest

TEXT_FIELDS = frozenset({"soc", "serial", "model", "manufacturer", "board", "host", "abi"})
NUMBER_FIELDS = frozenset({"htp_arch", "sdk", "battery", "temperature"})
MAX_LENGTH = 512

_TERM = re.compile(
    r"^(?P<field>[a-z_]+)\s*(?P<op>>=|<=|!=|=|>|<|~)\s*(?P<value>[A-Za-z0-9_.:\-]+)$"
)
_NUMBER_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str

    def matches(self, facts: Mapping[str, object]) -> bool:
        actual = facts.get(self.field)
        if actual is None:
            return False
        if self.field in NUMBER_FIELDS:
            return _NUMBER_OPS[self.op](float(actual), float(self.value))  # type: ignore[arg-type]
        text = str(actual)
        if self.op == "~":
            return self.value.lower() in text.lower()
        if self.op == "=":
            return text.lower() == self.value.lower()
        return text.lower() != self.value.lower()

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


@dataclass(frozen=True)
class Selector:
    """An "or" of groups, each an "and" of terms; no groups at all means every phone."""

    groups: tuple[tuple[Term, ...], ...]

    @property
    def is_all(self) -> bool:
        return not self.groups

    def matches(self, facts: Mapping[str, object]) -> bool:
        if self.is_all:
            return True
        return any(all(term.matches(facts) for term in group) for group in self.groups)

    def select(self, devices: Iterable[Mapping[str, object]]) -> list[Mapping[str, object]]:
        return [device for device in devices if self.matches(device)]

    def __str__(self) -> str:
        if self.is_all:
            return "all"
        return "|".join(",".join(str(term) for term in group) for group in self.groups)


def _parse_term(text: str) -> Term:
    match = _TERM.match(text)
    if match is None:
        raise InvalidRequest(f"selector term {text!r} is not FIELD OP VALUE (e.g. soc=SM8550)")
    field, op, value = match["field"], match["op"], match["value"]
    if field in NUMBER_FIELDS:
        if op == "~":
            raise InvalidRequest(f"selector term {text!r}: '~' applies to text fields only")
        try:
            float(value)
        except ValueError:
            raise InvalidRequest(f"selector term {text!r}: {field} takes a number") from None
    elif field in TEXT_FIELDS:
        if op not in ("=", "!=", "~"):
            raise InvalidRequest(f"selector term {text!r}: {field} takes =, != or ~")
    else:
        known = ", ".join(sorted(TEXT_FIELDS | NUMBER_FIELDS))
        raise InvalidRequest(f"selector field {field!r} is unknown (known: {known})")
    return Term(field, op, value)


def parse_selector(text: str) -> Selector:
    """Parse a selector string; raises InvalidRequest with the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("the device selector is empty (use 'all' for every phone)")
    if len(text) > MAX_LENGTH:
        raise InvalidRequest(f"the device selector is longer than {MAX_LENGTH} characters")
    stripped = text.strip()
    if stripped.lower() == "all":
        return Selector(groups=())
    groups = []
    for group_text in stripped.split("|"):
        terms = [part.strip() for part in group_text.split(",")]
        if any(not term for term in terms):
            raise InvalidRequest(f"selector {text!r} has an empty term")
        groups.append(tuple(_parse_term(term) for term in terms))
    return Selector(groups=tuple(groups))
