"""The field test in the real MicroPython (WebAssembly port): provisioning mode's TEST
with the bell's and the light's real field-test service on a fake modem, NVS and RTC
memory (tests/unit/test_fieldtest_rig.py), firmware modules in /lib as on a device.

Each case's replies and frames are judged in CPython exactly as the CPython run is
(tests/unit/test_fieldtest.py): the host's reply decoder, the gateway's codec for the
bytes on air, the app's next counter after the reset. And both interpreters must put
the same bytes on air and answer the same.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit import test_fieldtest as checks
from tests.unit import test_fieldtest_rig as rig

from .conftest import ROOT, MicroPython, firmware_lib

pytestmark = pytest.mark.micropython

UNIT = ROOT / "tests" / "unit"
SCRIPT = """
import json
import test_fieldtest_rig as rig
print(json.dumps(rig.run_all()))
"""


@pytest.fixture(scope="module")
def mp_run(micropython: MicroPython) -> dict[str, Any]:
    files = [
        *firmware_lib(),
        ROOT / "firmware" / "bell" / "bell.py",
        ROOT / "firmware" / "bell" / "bellcheck.py",
        ROOT / "firmware" / "light" / "light.py",
        UNIT / "test_bell_fakes.py",
        UNIT / "test_radio_lbt.py",
        UNIT / "test_fieldtest_rig.py",
    ]
    out = micropython.run(SCRIPT, files)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("case", sorted(checks.CHECKS))
def test_field_test_case_in_micropython(mp_run: dict[str, Any], case: str) -> None:
    checks.CHECKS[case](mp_run[case])


def test_micropython_and_cpython_answer_and_send_the_same(mp_run: dict[str, Any]) -> None:
    cpython = json.loads(json.dumps(rig.run_all()))
    assert set(mp_run) == set(cpython)
    for case, out in cpython.items():
        assert mp_run[case]["sent"] == out["sent"], case
        for name in ("app_warm", "app_cold", "down_last"):
            assert mp_run[case][name] == out[name], (case, name)
        # Reply bodies are JSON from dicts, whose key order MicroPython does not keep:
        # compare them decoded.
        for mp_hex, cp_hex in zip(mp_run[case]["replies"], out["replies"], strict=True):
            mp, cp = checks.replies({"replies": [mp_hex, cp_hex]})
            assert (mp.op, mp.seq, mp.status) == (cp.op, cp.seq, cp.status), case
            if mp.body.startswith(b"{"):
                assert mp.json() == cp.json(), case
            else:
                assert mp.text == cp.text, case
