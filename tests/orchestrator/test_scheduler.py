"""Scheduling: fan-out, any-N on capability queues, least-loaded spreading, retries elsewhere."""

from __future__ import annotations

import re

import pytest

from hexfleet.broker import device_queue, queues_for_device
from hexfleet.errors import InvalidRequest
from hexfleet.orchestrator.scheduler import plan_runs, retry_queue
from hexfleet.orchestrator.selectors import parse_selector

FLEET = [
    {"serial": "a", "soc": "SM8550", "htp_arch": 73, "model": "Galaxy S23"},
    {"serial": "b", "soc": "SM8550", "htp_arch": 73, "model": "Galaxy S23"},
    {"serial": "c", "soc": "SM8650", "htp_arch": 75, "model": "Galaxy S24"},
]


def test_fan_out_gives_every_matching_phone_its_own_runs() -> None:
    runs = plan_runs(parse_selector("soc=SM8550"), FLEET, repeat=2)
    # Round by round: every phone's first run is dispatched before anyone's second.
    assert [(r.queue, r.serial) for r in runs] == [
        ("device.a", "a"),
        ("device.b", "b"),
        ("device.a", "a"),
        ("device.b", "b"),
    ]
    assert [r.slot for r in runs] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("selector", "queue"),
    [
        ("all", "any"),
        ("soc=SM8550", "soc.SM8550"),
        ("htp_arch=75", "arch.75"),
        ("serial=c", "device.c"),
    ],
)
def test_any_n_uses_the_capability_queue(selector: str, queue: str) -> None:
    runs = plan_runs(parse_selector(selector), FLEET, count=3)
    assert {r.queue for r in runs} == {queue}
    assert all(r.serial is None for r in runs)


def test_any_n_with_a_compound_selector_spreads_least_loaded_first() -> None:
    runs = plan_runs(
        parse_selector("model~Galaxy,htp_arch>=73"), FLEET, count=4, load=lambda: {"a": 2}
    )
    assert [r.serial for r in runs] == ["b", "c", "b", "c"]


def test_every_capability_queue_is_consumed_by_some_phone() -> None:
    consumed = {q for d in FLEET for q in queues_for_device(d)}
    for selector in ("all", "soc=SM8550", "htp_arch=75", "serial=a"):
        for run in plan_runs(parse_selector(selector), FLEET, count=1):
            assert run.queue in consumed


def test_a_selector_matching_nothing_is_refused_at_submit() -> None:
    with pytest.raises(InvalidRequest, match="no online phone matches"):
        plan_runs(parse_selector("soc=SM8750"), FLEET)


def test_retry_never_goes_back_to_a_lost_phone() -> None:
    selector = parse_selector("soc=SM8550")
    assert retry_queue(selector, FLEET, {"a"}) == ("device.b", "b")
    assert retry_queue(selector, FLEET, {"a", "b"}) is None


def test_a_retry_goes_to_the_least_loaded_phone() -> None:
    everyone = parse_selector("all")
    assert retry_queue(everyone, FLEET, {"a"}, {"b": 4, "c": 1}) == ("device.c", "c")
    assert retry_queue(everyone, FLEET, {"a"}, {"b": 1, "c": 1}) == ("device.b", "b")


def test_device_queues_are_safe_names_for_every_transport() -> None:
    queue = device_queue("127.0.0.1:5555")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", queue)
    assert queue != device_queue("127.0.0.1_5555")
    assert device_queue("R5CT1234ABC") == "device.R5CT1234ABC"
