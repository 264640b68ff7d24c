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
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from hexfleet.errors import InvalidRequest

TEXT_FIELDS = frozenset({"soc", "serial", "model", "manufacturer", "board", "host", "abi"})
NUMBER_FIELDS = frozenset({"htp_arch", "sdk", "battery", "temperature"})
MAX_LENGTH = 512

# Spaces (only spaces) may surround terms and operators; a number is a plain decimal.
_TERM = re.compile(r"(?P<field>[a-z_]+) *(?P<op>>=|<=|!=|=|>|<|~) *(?P<value>[A-Za-z0-9_.:\-]+)")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _one_of(names: frozenset[str]) -> str:
    return "|".join(sorted(names))


_TEXT_TERM = rf"(?:{_one_of(TEXT_FIELDS)}) *(?:!=|=|~) *[A-Za-z0-9_.:\-]+"
_NUMBER_TERM = rf"(?:{_one_of(NUMBER_FIELDS)}) *(?:>=|<=|!=|=|>|<) *{_NUMBER.pattern}"
_GROUP = rf" *(?:{_TEXT_TERM}|{_NUMBER_TERM}) *(?:, *(?:{_TEXT_TERM}|{_NUMBER_TERM}) *)*"
# Exactly the selectors `parse_selector` accepts (the API's request schemas carry it, so a client
# generated from them knows the language; tests/orchestrator/test_selectors.py holds the two equal).
SELECTOR_PATTERN = rf"^(?: *[Aa][Ll][Ll] *|{_GROUP}(?:\|{_GROUP})*)$"
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
    match = _TERM.fullmatch(text)
    if match is None:
        raise InvalidRequest(f"selector term {text!r} is not FIELD OP VALUE (e.g. soc=SM8550)")
    field, op, value = match["field"], match["op"], match["value"]
    if field in NUMBER_FIELDS:
        if op == "~":
            raise InvalidRequest(f"selector term {text!r}: '~' applies to text fields only")
        if not _NUMBER.fullmatch(value):
            raise InvalidRequest(f"selector term {text!r}: {field} takes a number, e.g. 73 or 1.5")
    elif field in TEXT_FIELDS:
        if op not in ("=", "!=", "~"):
            raise InvalidRequest(f"selector term {text!r}: {field} takes =, != or ~")
    else:
        known = ", ".join(sorted(TEXT_FIELDS | NUMBER_FIELDS))
        raise InvalidRequest(f"selector field {field!r} is unknown (known: {known})")
    return Term(field, op, value)


def parse_selector(text: str) -> Selector:
    """Parse a selector string; raises InvalidRequest with the offending part."""
    if not isinstance(text, str) or not text.strip(" "):
        raise InvalidRequest("the device selector is empty (use 'all' for every phone)")
    if len(text) > MAX_LENGTH:
        raise InvalidRequest(f"the device selector is longer than {MAX_LENGTH} characters")
    stripped = text.strip(" ")
    if stripped.lower() == "all":
        return Selector(groups=())
    groups = []
    for group_text in stripped.split("|"):
        terms = [part.strip(" ") for part in group_text.split(",")]
        if any(not term for term in terms):
            raise InvalidRequest(f"selector {text!r} has an empty term")
        groups.append(tuple(_parse_term(term) for term in terms))
    return Selector(groups=tuple(groups))


def _checked(text: str) -> str:
    try:
        parse_selector(text)
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None
    return text


# A selector as request bodies take it: checked by `parse_selector` (its messages name the bad
# part), described by SELECTOR_PATTERN in the API's schema, which admits exactly the same strings.
SelectorText = Annotated[
    str,
    AfterValidator(_checked),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH, "pattern": SELECTOR_PATTERN}
    ),
]
