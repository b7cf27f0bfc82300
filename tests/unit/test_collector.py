"""The cyclic collector as a process keeping a compiled cluster sets it (`settle_collector`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from controller.pipeline.compile import GEN0_THRESHOLD, Compiler, gc_paused, settle_collector
from topology.model import Model


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector's thresholds and frozen objects as they were before the test."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    gc.set_threshold(*threshold)
    if not frozen:
        gc.unfreeze()


def test_settling_freezes_the_compiled_state_and_raises_the_first_threshold(collector: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    model = Model()
    model.add_tenant("t")
    compiler = Compiler(model)
    with gc_paused():
        compiler.compile_all()
    settle_collector()
    assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0
    watched = {id(o) for o in gc.get_objects()}  # every generation's objects; the frozen are in none
    assert gc.is_tracked(compiler) and id(compiler) not in watched
    assert id(model) not in watched


def test_frozen_state_is_still_freed_by_reference_counting(collector: None) -> None:
    class Probe:
        freed = False

        def __del__(self) -> None:
            Probe.freed = True

    held = [Probe()]
    settle_collector()
    del held
    assert Probe.freed
