"""Fixtures for the HIL scenarios: a software rack per scenario, fixed seed, a trace plot.

Every scenario gets fresh racks from ``make_rack`` (the default rack of
``examples/rack.toml``, or only the boards it names), seeded with :data:`SEED` so a
failure reproduces exactly.  Boards run the real firmware in the MicroPython VM
(runtime ``vm``) unless the scenario is marked ``@pytest.mark.runtime("cpython")``
(with the reason in its docstring) or ``RACKHIL_RUNTIME`` says otherwise.

Artifacts: ``artifacts/scenarios/<test>/trace.png`` (key signals over virtual time,
with every injected fault marked) and ``trace.csv`` are written for every run, passed
or failed, when the rack is torn down.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rackhil import rackspec
from rackhil.rack import Rack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "scenarios"
SEED = 20261125


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runtime(name): run this scenario's boards on 'vm' or 'cpython'")


def _node_factory() -> Any:
    """``RACKHIL_NODE_FACTORY=module:function`` swaps the node factory (debugging)."""
    spec = os.environ.get("RACKHIL_NODE_FACTORY")
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _runtime(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("runtime")
    runtime = marker.args[0] if marker else os.environ.get("RACKHIL_RUNTIME", "vm")
    if runtime == "vm" and _node_factory() is None and shutil.which("node") is None:
        pytest.skip("runtime vm needs Node >= 20 (the MicroPython WebAssembly VM)")
    return runtime


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


MakeRack = Callable[..., Rack]


@pytest.fixture
def make_rack(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[MakeRack]:
    """``make_rack(boards=(1,), plant={1: {...}}, runtime=None, **Rack kwargs)``."""
    made: list[Rack] = []
    runtime = _runtime(request)

    def make(
        boards: tuple[int, ...] | None = None,
        *,
        plant: dict[int, dict[str, Any]] | None = None,
        seed: int = SEED,
        **kw: Any,
    ) -> Rack:
        spec = rackspec.default(runtime)
        chosen = [b for b in spec.boards if boards is None or b.id in boards]
        if plant:
            chosen = [dataclasses.replace(b, plant={**b.plant, **plant.get(b.id, {})}) for b in chosen]
        spec = dataclasses.replace(spec, boards=tuple(chosen), seed=seed, name=request.node.name)
        rack = Rack(spec, node_factory=_node_factory(), **kw)
        made.append(rack)
        return rack

    yield make
    for i, rack in enumerate(made):
        stem = "trace" if i == 0 else f"trace{i + 1}"
        try:
            rack.trace.plot(artifacts / f"{stem}.png")
            (artifacts / f"{stem}.csv").write_text(rack.trace.to_csv())
        finally:
            rack.close()


@pytest.fixture
def rack(make_rack: MakeRack) -> Rack:
    """The whole default rack (shelves 1, 2; CDUs 3, 4)."""
    return make_rack()
