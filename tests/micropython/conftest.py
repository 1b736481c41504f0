"""The `micropython` fixture: run a script in the real MicroPython interpreter.

The interpreter is the official WebAssembly port (npm
`@micropython/micropython-webassembly-pyscript`, pinned in package.json) started by
Node.js through `mp_host.mjs`. Firmware modules are copied into its /lib, as on a device.
Node start-up costs about a second, so a test should run many cases in one script
(vectors go in as JSON files) rather than start one interpreter per case.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = Path(__file__).resolve().parent / "mp_host.mjs"
PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
FIRMWARE_LIB = ROOT / "firmware" / "lib"
VECTORS = ROOT / "protocol" / "vectors"
TIMEOUT_S = 300


class MicroPythonError(AssertionError):
    """The script raised in MicroPython; the message carries MicroPython's traceback."""


class MicroPython:
    """Runs scripts in a fresh MicroPython interpreter, one Node process per `run`."""

    def __init__(self, node: str, tmp: Path) -> None:
        self.node = node
        self._tmp = tmp
        self._runs = 0

    def run(
        self,
        script: str,
        files: Iterable[str | Path] | Mapping[str, str | Path] = (),
        *,
        data: Mapping[str, str | Path] | None = None,
        heap: int | None = None,
    ) -> str:
        """Run ``script``; return what it printed.

        ``files`` is a list of host files to copy into /lib (firmware modules: paths
        relative to the repository root, or absolute), or a mapping from absolute
        MicroPython paths to host files; ``data`` is such a mapping too
        (``{"/vectors/frames.json": path}``). ``heap`` is the heap size in bytes.
        Raises `MicroPythonError` with MicroPython's traceback if the script raises.
        """
        args = [self.node, str(HOST)]
        puts = dict(files) if isinstance(files, Mapping) else {}
        if not isinstance(files, Mapping):
            for host_path in files:
                args += ["--lib", str(_host(host_path))]
        puts.update(data or {})
        for fs_path, host_path in puts.items():
            args += ["--put", f"{fs_path}={_host(host_path)}"]
        if heap is not None:
            args += ["--heap", str(heap)]
        self._runs += 1
        script_file = self._tmp / f"script{self._runs}.py"
        script_file.write_text(script, encoding="utf-8")
        args.append(str(script_file))
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT, check=False
        )
        if proc.returncode != 0:
            raise MicroPythonError(
                f"MicroPython exited with {proc.returncode}\n"
                f"--- stderr ---\n{proc.stderr}\n--- stdout ---\n{proc.stdout}"
            )
        return proc.stdout


def _host(path: str | Path) -> Path:
    p = Path(path)
    p = p if p.is_absolute() else ROOT / p
    if not p.is_file():
        raise FileNotFoundError(f"no such file to copy into MicroPython: {p}")
    return p


def firmware_lib() -> list[Path]:
    """Every module of firmware/lib, for `MicroPython.run(files=...)`."""
    return sorted(FIRMWARE_LIB.glob("*.py"))


@pytest.fixture(scope="session")
def micropython(tmp_path_factory: pytest.TempPathFactory) -> MicroPython:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the MicroPython (WebAssembly) tests need `node`")
    if not (PACKAGE / "micropython.mjs").is_file():
        pytest.fail(
            f"{PACKAGE.relative_to(ROOT)} is missing: run make test (npm ci) to install "
            "the MicroPython WebAssembly port",
            pytrace=False,
        )
    return MicroPython(node, tmp_path_factory.mktemp("micropython"))
