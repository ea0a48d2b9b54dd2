"""The two steps of an alert in the core and the store, without a service: what each step
stores, that the second is recorded once, and that a retraction in between withdraws it."""

from __future__ import annotations

import pytest

from gwfollow.config import load_config
from gwfollow.pipeline.runner import record_result
from gwfollow.products.core import FAST, SLOW, process_deferred, process_message
from gwfollow.products.resources import Resources
from gwfollow.store import Store

from .conftest import shared_path

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    cfg = load_config(env={})
    return cfg, Resources(cfg)


def _first(store: Store, cfg, res, name: str) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    body = shared_path("alerts", name).read_bytes()
    acc = store.accept_raw(body, name, "json", name)
    result = process_message(body, name, cfg, defer=True, resources=res)
    o = record_result(store, acc.raw_id, name, result)
    assert o.status == "processed" and o.deferred_id is not None
    return o.deferred_id, body


def test_first_step_then_second_step_once(tmp_path, setup) -> None:
    cfg, res = setup
    store = Store(tmp_path / "d.sqlite")
    work_id, body = _first(store, cfg, res, "MS181101ab-ext-update.json")  # with a combined GW+GRB map
    work = store.deferred(work_id)
    assert work.state == "pending" and work.parts.parts == ("gw", "combined")
    assert store.pending_deferred_ids() == [work_id]
    first = store.products_of("MS181101ab")
    assert {p["kind"] for p in first} == set(FAST)  # no slow product yet
    assert [m["role"] for m in store.skymaps_of("MS181101ab")] == ["gw"]
    gw = store.skymap_bytes(store.skymaps_of("MS181101ab")[0]["id"])
    second = process_deferred(body, "MS181101ab-ext-update.json", cfg, gw, work.parts, res)
    done = store.record_deferred(work_id, second)
    assert done.state == "done" and store.pending_deferred_ids() == []
    maps = store.skymaps_of("MS181101ab")
    assert [m["role"] for m in maps] == ["gw", "combined"]
    by_map = {m["role"]: {p["kind"] for p in store.products_of("MS181101ab") if p["skymap_id"] == m["id"]}
              for m in maps}
    assert by_map["gw"] == set(FAST) | {"observability", "plan"}  # no coverage configured by default
    assert by_map["combined"] == by_map["gw"]
    n = store.counts()["products"]
    store.record_deferred(work_id, second)  # a second recording (a retry after a lost answer) adds nothing
    assert store.counts()["products"] == n
    assert set(SLOW) >= {"observability", "plan"}


def test_second_step_after_a_retraction_is_stored_withdrawn(tmp_path, setup) -> None:
    cfg, res = setup
    store = Store(tmp_path / "r.sqlite")
    work_id, body = _first(store, cfg, res, "MS181101ab-preliminary.json")
    retraction = shared_path("alerts", "MS181101ab-retraction.json").read_bytes()
    acc = store.accept_raw(retraction, "r", "json", "r")
    record_result(store, acc.raw_id, "r", process_message(retraction, "r", cfg, defer=True, resources=res))
    work = store.deferred(work_id)
    gw = store.skymap_bytes(store.skymaps_of("MS181101ab")[0]["id"])
    store.record_deferred(work_id, process_deferred(body, "p", cfg, gw, work.parts, res))
    slow = [p for p in store.products_of("MS181101ab") if p["kind"] in ("plan", "observability")]
    assert slow and all(p["withdrawn"] for p in slow)
    assert store.event("MS181101ab").state == "retracted"
