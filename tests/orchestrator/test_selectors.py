"""Device selectors: the documented forms match what they say; any other string is a clear error."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hexfleet.errors import InvalidRequest
from hexfleet.orchestrator.selectors import SELECTOR_PATTERN, parse_selector

FLEET = [
    {"serial": "vp-8450", "soc": "SM8450", "htp_arch": 69, "model": "Galaxy S22", "sdk": 33},
    {"serial": "vp-8550", "soc": "SM8550", "htp_arch": 73, "model": "Galaxy S23", "sdk": 34},
    {"serial": "vp-8650", "soc": "SM8650", "htp_arch": 75, "model": "Galaxy S24", "sdk": 34},
    {"serial": "vp-8750", "soc": "SM8750", "htp_arch": 79, "model": "Pixel-like", "sdk": 35},
]


def serials(selector: str) -> list[str]:
    return [str(d["serial"]) for d in parse_selector(selector).select(FLEET)]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("all", ["vp-8450", "vp-8550", "vp-8650", "vp-8750"]),
        ("soc=SM8550", ["vp-8550"]),
        ("soc=sm8550", ["vp-8550"]),
        ("htp_arch>=75", ["vp-8650", "vp-8750"]),
        ("htp_arch<73", ["vp-8450"]),
        ("serial=vp-8750", ["vp-8750"]),
        ("model~galaxy", ["vp-8450", "vp-8550", "vp-8650"]),
        ("model~Galaxy,htp_arch>=73", ["vp-8550", "vp-8650"]),
        ("soc=SM8450|soc=SM8750", ["vp-8450", "vp-8750"]),
        ("soc!=SM8450,sdk=34", ["vp-8550", "vp-8650"]),
        ("soc=SM9999", []),
    ],
)
def test_documented_forms(selector: str, expected: list[str]) -> None:
    assert serials(selector) == expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("", "empty"),
        ("colour=red", "unknown"),
        ("htp_arch>=high", "takes a number"),
        ("htp_arch~7", "text fields only"),
        ("soc>=SM8550", "takes =, != or ~"),
        ("soc=SM8550,", "empty term"),
        ("soc=$(reboot)", "FIELD OP VALUE"),
        ("serial=a;b", "FIELD OP VALUE"),
        ("x" * 600, "longer than"),
    ],
)
def test_bad_selectors_are_clear_errors(selector: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_selector(selector)


@given(st.text(max_size=80))
def test_any_string_parses_or_is_an_invalid_request(text: str) -> None:
    try:
        selector = parse_selector(text)
    except InvalidRequest:
        return
    selector.select(FLEET)
    assert parse_selector(str(selector)) == selector


@given(
    st.sampled_from(["soc", "serial", "model"]),
    st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True),
)
def test_round_trip_of_valid_terms(field: str, value: str) -> None:
    selector = parse_selector(f"{field}={value}")
    assert str(selector) == f"{field}={value}"


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.from_regex(SELECTOR_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 512),
        st.text(alphabet="socmdelhtp_arbiky =!<>~,|.:-0123456789SMAXZ\n\t", max_size=40),
    )
)
def test_the_schema_pattern_admits_exactly_what_the_parser_accepts(text: str) -> None:
    """The API's schema carries SELECTOR_PATTERN: a client generated from it must never build a
    selector the server refuses, nor be told a selector is wrong that the server would take."""
    try:
        parse_selector(text)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert accepted == bool(re.fullmatch(SELECTOR_PATTERN, text) and len(text) <= 512), text
