"""Putting a build on a board over its USB serial port, with mpremote's Python API.

Steps (each one a raw-REPL exchange through `mpremote.transport_serial.SerialTransport`):

1. enter the raw REPL (Ctrl-C stops the app, Ctrl-D soft-resets to a clean heap);
2. mip-install the role's micropython-lib packages into /lib from ``--index`` (an
   index URL, or a cache folder made by `fetch-deps`), skipping files already there;
3. copy the build, removing a stale ``x.py`` that would shadow a new ``x.mpy``;
4. write the config: a file on file-system boards, the NVS blob on ESP32 boards;
5. verify: every file's SHA-256 read back from the board; the NVS blob read back; and the
   config loaded by the firmware's own `provision.open_store` on the board;
6. reset the board (``machine.reset()``), so it boots the new firmware.

A device's config survives a flash without ``--device``: the identity stays.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpremote.transport import TransportError, TransportExecError  # type: ignore[import-untyped]
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

from tools.crew import CrewError
from tools.crew import mip as miplib
from tools.crew.firmware import DEPENDENCIES, Build

_CHUNK = 2048  # bytes of a file per raw-REPL exchange (base64 in the command)

Progress = Callable[[int, int], None]
Say = Callable[[str], None]


class BoardError(CrewError):
    """The board did not do what was asked; the message says what and where."""


def open_board(port: str) -> Any:
    """An mpremote SerialTransport on ``port``, in the raw REPL (soft-reset)."""
    try:
        # A read timeout: on a pty mpremote reads without waiting for data first, and
        # a board that never answers would otherwise block it for good.
        t = SerialTransport(port, baudrate=115200, timeout=10)
    except (TransportError, OSError) as exc:
        raise BoardError(f"cannot open {port}: {exc}") from None
    try:
        t.enter_raw_repl(soft_reset=True)
    except TransportError:
        t.close()
        raise BoardError(
            f"the board on {port} did not answer with a raw REPL: is it a MicroPython board? "
            "(firmware that ignores Ctrl-C, like the bridge, must be reset first: press RST "
            "and run this again at once)"
        ) from None
    return t


def run(t: Any, code: str) -> bytes:
    try:
        out: bytes = t.exec(code)
    except TransportExecError as exc:
        lines = exc.error_output.strip().splitlines() or ["failed"]
        raise BoardError(f"on the board: {lines[-1]}") from None
    except TransportError as exc:
        raise BoardError(f"lost the board's raw REPL: {exc}") from None
    return out


def ensure_dir(t: Any, path: str, made: set[str]) -> None:
    parts = [p for p in path.split("/") if p]
    at = ""
    for part in parts:
        at += "/" + part
        if at in made:
            continue
        run(t, f"import os\ntry:\n os.mkdir({at!r})\nexcept OSError:\n pass")
        made.add(at)


def write_file(t: Any, path: str, data: bytes, made: set[str] | None = None) -> None:
    """Write ``data`` to ``path`` on the board, creating folders; base64 in 2 KB chunks."""
    made = made if made is not None else set()
    ensure_dir(t, path.rsplit("/", 1)[0], made)
    run(t, f"import binascii\n_f=open({path!r},'wb')\n_w=_f.write\n_d=binascii.a2b_base64")
    for i in range(0, len(data), _CHUNK):
        run(t, f"_w(_d({base64.b64encode(data[i : i + _CHUNK])!r}))")
    run(t, "_f.close()\ndel _f,_w,_d")


def board_hash(t: Any, path: str) -> str | None:
    try:
        return str(t.fs_hashfile(path, "sha256").hex())
    except (OSError, TransportError):
        return None


@dataclass(frozen=True)
class FlashResult:
    port: str
    build: Build
    mpy: str
    deps: list[miplib.Installed]
    files: list[tuple[str, int, bool]]  # path, size, written
    verified: int
    config_device: str | None
    config_key_check: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "role": self.build.role,
            "board": self.build.board,
            "version": self.build.version,
            "mpy": self.mpy,
            "deps": [
                {"path": d.path, "package": d.package, "written": d.written} for d in self.deps
            ],
            "files": [{"path": p, "size": s, "written": w} for p, s, w in self.files],
            "verified": self.verified,
            "config": {"device_id": self.config_device, "key_check": self.config_key_check}
            if self.config_device
            else None,
        }


def flash(
    port: str,
    build: Build,
    *,
    index: str | None = None,
    deps: tuple[str, ...] | None = None,
    progress: Progress | None = None,
    say: Say | None = None,
    reset: bool = True,
) -> FlashResult:
    """Install ``build`` (and its role's packages) on the board at ``port``; verify; reset."""

    def step(text: str) -> None:
        if say is not None:
            say(text)

    packages = DEPENDENCIES[build.role] if deps is None else deps
    t = open_board(port)
    try:
        run(t, "import sys")
        mpy = str(t.eval("getattr(sys.implementation, '_mpy', 0) & 0xFF") or "py")
        step(f"board on {port}: MicroPython with .mpy v{mpy}")
        made: set[str] = set()

        def mip_write(tr: Any, path: str, data: bytes) -> None:
            write_file(tr, path, data, made)

        installed: list[miplib.Installed] = []
        if packages:
            step(f"installing {', '.join(packages)} from {index or miplib.DEFAULT_INDEX}")
            installed = miplib.install(
                t,
                index or miplib.DEFAULT_INDEX,
                packages,
                mpy=mpy,
                write=mip_write,
                progress=progress,
            )
        step(f"copying {len(build.files)} files ({build.total} bytes)")
        written: list[tuple[str, int, bool]] = []
        for i, f in enumerate(build.files):
            data = (build.out / f.path).read_bytes()
            dest = "/" + f.path
            same = board_hash(t, dest) == f.sha256
            if not same:
                write_file(t, dest, data, made)
            if dest.endswith(".mpy"):  # a stale source file would be imported instead
                run(
                    t, f"import os\ntry:\n os.remove({dest[:-4] + '.py'!r})\nexcept OSError:\n pass"
                )
            written.append((dest, f.size, not same))
            if progress is not None:
                progress(i + 1, len(build.files))
        for key, rel in build.nvs.items():
            ns, name = key.split("/", 1)
            blob = (build.out / rel).read_bytes()
            run(
                t,
                "import esp32, binascii\n"
                f"_n=esp32.NVS({ns!r})\n"
                f"_n.set_blob({name!r}, binascii.a2b_base64({base64.b64encode(blob)!r}))\n"
                "_n.commit()",
            )

        step("verifying")
        verified = 0
        for dest, _, _ in written:
            want = next(f.sha256 for f in build.files if "/" + f.path == dest)
            got = board_hash(t, dest)
            if got != want:
                raise BoardError(f"{dest} on the board does not match the build (read back {got})")
            verified += 1
        for d in installed:
            if board_hash(t, d.path) != d.sha256:
                raise BoardError(f"{d.path} ({d.package}) on the board does not match the index")
            verified += 1
        for key, rel in build.nvs.items():
            ns, name = key.split("/", 1)
            blob = (build.out / rel).read_bytes()
            got_hex = run(
                t,
                "import esp32, binascii\n"
                f"_b=bytearray({len(blob) + 64})\n"
                f"_k=esp32.NVS({ns!r}).get_blob({name!r}, _b)\n"
                "print(binascii.hexlify(_b[:_k]).decode())",
            )
            if got_hex.strip().decode() != blob.hex():
                raise BoardError(f"NVS {key} on the board does not match the build")
            verified += 1
        device_id = kcv = None
        if build.config is not None:
            device_id, kcv = _config_on_board(t)
            step(f"config on the board: device {device_id}, key check {kcv}")
        if reset:
            step("resetting the board")
            with contextlib.suppress(TransportError):  # it may reset before it answers
                t.exec_raw_no_follow("import machine\nmachine.reset()")
        return FlashResult(
            port=port,
            build=build,
            mpy=mpy,
            deps=installed,
            files=written,
            verified=verified,
            config_device=device_id,
            config_key_check=kcv,
        )
    finally:
        t.close()


def _config_on_board(t: Any) -> tuple[str, str]:
    """Load the config with the firmware's own code on the board; (device id, key check)."""
    out = run(
        t,
        "import json, binascii, provision\n"
        "_c=provision.open_store(json.load(open('/board.json'))).load_config() or {}\n"
        "print(json.dumps([_c.get('device_id'), "
        "provision.key_check(binascii.unhexlify(_c['key'])) if 'key' in _c else None]))",
    )
    try:
        device_id, kcv = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BoardError(f"the board's firmware could not load its config: {out!r}") from None
    if not device_id or not kcv:
        raise BoardError("the board's firmware finds no config after the flash")
    return str(device_id), str(kcv)
