"""The bell, store, radio and feedback scenarios in real MicroPython (WebAssembly port).

One interpreter run executes every ``test_*`` function of the scenario modules in
tests/unit/ (written to run in both interpreters) with the firmware modules in /lib,
as on a device, and prints the outcome of each plus every frame the bells put on air.
Here each outcome becomes a pytest result, the frames are decoded with the gateway's
codec, and they are compared byte for byte with the same scenarios run in CPython:
the same classes behave identically in both interpreters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit import (
    test_bell_scenarios,
    test_feedback_patterns,
    test_radio_lbt,
    test_store_scenarios,
)
from tests.unit.test_bell_gateway import check_trace, run_all_scenarios

from .conftest import ROOT, MicroPython, firmware_lib

pytestmark = pytest.mark.micropython

UNIT = ROOT / "tests" / "unit"
MODULES = [test_feedback_patterns, test_store_scenarios, test_radio_lbt, test_bell_scenarios]
CASES = [
    f"{m.__name__.rsplit('.', 1)[-1]}::{n}"
    for m in MODULES
    for n in sorted(dir(m))
    if n.startswith("test_")
]

RUNNER = """
import io
import json
import sys

import test_bell_fakes

results = {}
for modname in %r:
    mod = __import__(modname)
    for name in sorted(dir(mod)):
        if not name.startswith("test_"):
            continue
        try:
            getattr(mod, name)()
            results[modname + "::" + name] = "ok"
        except Exception as e:
            buf = io.StringIO()
            sys.print_exception(e, buf)
            results[modname + "::" + name] = buf.getvalue()
print(json.dumps({"results": results, "traces": test_bell_fakes.TRACES}))
"""


@pytest.fixture(scope="module")
def mp_run(micropython: MicroPython) -> dict[str, Any]:
    names = [m.__name__.rsplit(".", 1)[-1] for m in MODULES]
    files: list[Path | str] = [
        *firmware_lib(),
        ROOT / "firmware" / "bell" / "bell.py",
        UNIT / "test_bell_fakes.py",
        *(UNIT / f"{n}.py" for n in names),
    ]
    out = micropython.run(RUNNER % (names,), files)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("case", CASES)
def test_scenario_passes_in_micropython(mp_run: dict[str, Any], case: str) -> None:
    assert mp_run["results"].get(case) == "ok", mp_run["results"].get(case, "not run")


def test_micropython_frames_decode_with_the_gateway_codec(mp_run: dict[str, Any]) -> None:
    traces = mp_run["traces"]
    assert sum(len(t["frames"]) for t in traces.values()) > 500
    for name, trace in traces.items():
        assert len(check_trace(name, trace)) == len(trace["frames"]), name


def test_micropython_and_cpython_put_the_same_bytes_on_air(mp_run: dict[str, Any]) -> None:
    cpython = run_all_scenarios()
    assert set(cpython) == set(mp_run["traces"])
    for name, trace in cpython.items():
        assert mp_run["traces"][name]["frames"] == trace["frames"], name
