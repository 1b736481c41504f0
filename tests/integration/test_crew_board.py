"""The crew's CLI against an emulated board: the real MicroPython (WebAssembly port) behind
a pseudo-terminal (tools/crew/emulator.py), which mpremote, pyserial and the `anshim`
commands open like a USB board.

* `anshim firmware fetch-deps` mirrors a loopback package index (small test packages in
  micropython.org's v2 layout); `anshim firmware flash --port <pty> --index <cache>`
  installs them and the build, and every file read back from the board matches;
* `anshim provision serial --port <pty>` writes a config that the firmware's own code
  (`provision.open_store`, `bell.parse_config`) loads on the board, first in clear and
  then, after `device rekey`, signed with the old key;
* `anshim field-test --port <pty>` gets the board's self-test and its test ALARM, which
  a running gateway hears through two receivers, and reports both.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mpremote.transport_serial import SerialTransport

from gateway import db
from gateway.registry import Registry
from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tests.integration.conftest import Broker
from tests.integration.helpers import running_gateway, settings
from tools.anshim.cli import main
from tools.crew import firmware as fw
from tools.crew.devconfig import device_config
from tools.crew.emulator import Emulator
from tools.crew.firmware import compile_mpy

pytestmark = pytest.mark.integration

# Small stand-ins for the micropython-lib packages, importable on the board.
TEST_PACKAGES: dict[str, tuple[dict[str, str], list[str]]] = {
    "lora": ({"lora/__init__.py": "VERSION = 'test-index'\n"}, []),
    "lora-sx126x": ({"lora/sx126x.py": "CHIP = 'SX1262'\n"}, ["lora"]),
    "lora-sync": ({"lora/sync_modem.py": "SYNC = True\n"}, ["lora"]),
    "lora-async": ({"lora/async_modem.py": "ASYNC = True\n"}, ["lora"]),
    "aioble": ({"aioble/__init__.py": "def advertise():\n    return None\n"}, []),
}


def make_index(root: Path, tmp: Path) -> dict[str, bytes]:
    """A v2 package index (package/6/<name>/latest.json, file/xx/<hash>); path -> bytes."""
    files: dict[str, bytes] = {}
    for name, (sources, deps) in TEST_PACKAGES.items():
        hashes = []
        for path, text in sources.items():
            src = tmp / "src" / path
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(text)
            mpy = tmp / "mpy" / path.replace(".py", ".mpy")
            compile_mpy(src, mpy, "xtensawin")
            data = mpy.read_bytes()
            short = hashlib.sha256(data).hexdigest()[:8]
            (root / "file" / short[:2]).mkdir(parents=True, exist_ok=True)
            (root / "file" / short[:2] / short).write_bytes(data)
            target = path.replace(".py", ".mpy")
            hashes.append([target, short])
            files[target] = data
        meta = {"v": 1, "version": "0.0.1", "hashes": hashes, "deps": [[d, "latest"] for d in deps]}
        pkg = root / "package" / "6" / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "latest.json").write_text(json.dumps(meta))
    return files


@pytest.fixture(scope="module")
def package_index(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, bytes]]]:
    root = tmp_path_factory.mktemp("index")
    files = make_index(root / "pi", tmp_path_factory.mktemp("index-src"))
    handler = functools.partial(_QuietHandler, directory=str(root / "pi"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_bell(capsys: pytest.CaptureFixture[str], data: Path) -> str:
    code, out, err = cli(
        capsys, "device", "add", "--data-dir", str(data), "--kind", "bell",
        "--name", "형제봉 입구 비상벨", "--lat", "37.6046", "--lon", "126.9920",
        "--national-point-number", "다사 5640 5320", "--heartbeat-s", "1800",
    )  # fmt: skip
    assert code == 0, err
    return out.strip()


def preflash(state: Path, role: str, board: str, config: dict[str, Any] | None = None) -> None:
    """Put a build on the emulated board's flash directly, as if it had been flashed."""
    build = fw.build(role, board, state / "flash", config=config)
    if build.nvs:
        nvs: dict[str, dict[str, str]] = {}
        for key, rel in build.nvs.items():
            ns, name = key.split("/")
            nvs.setdefault(ns, {})[name] = (build.out / rel).read_bytes().hex()
        (state / "nvs.json").write_text(json.dumps(nvs))
        shutil.rmtree(build.out / fw.NVS_DIR)


def on_board(port: str, code: str) -> Any:
    """Run ``code`` on the board through mpremote; it prints one JSON value."""
    t = SerialTransport(port, baudrate=115200, timeout=10)
    try:
        t.enter_raw_repl(soft_reset=True)
        out = t.exec(code)
        t.exit_raw_repl()
    finally:
        t.close()
    return json.loads(out.decode().strip().splitlines()[-1])


LOAD_BELL_CONFIG = """
import json, binascii, provision, bell
board = json.load(open('/board.json'))
cfg = bell.parse_config(provision.open_store(board).load_config())
print(json.dumps({"device_id": cfg["device_id"], "key": binascii.hexlify(cfg["key"]).decode(),
                  "heartbeat_s": cfg["heartbeat_s"]}))
"""


def test_fetch_deps_mirrors_an_index_and_fails_clearly_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, package_index: tuple[str, dict[str, bytes]]
) -> None:
    url, _ = package_index
    cache = tmp_path / "cache"
    code, out, err = cli(capsys, "firmware", "fetch-deps", "--index", url, "--out", str(cache))
    assert code == 0, err
    assert "cached 5 packages, 5 files" in out
    assert (cache / "package" / "6" / "lora-sx126x" / "latest.json").is_file()
    # the cache is an index too: a second fetch from it into another folder works
    code, _, err = cli(
        capsys, "firmware", "fetch-deps", "--index", str(cache), "--out", str(tmp_path / "c2"),
        "--role", "bridge",
    )  # fmt: skip
    assert code == 0, err
    # no index to reach: one line, exit 1
    code, out, err = cli(
        capsys,
        "firmware",
        "fetch-deps",
        "--index",
        "http://127.0.0.1:9",
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "cannot reach the package index http://127.0.0.1:9" in err
    code, _, err = cli(
        capsys, "firmware", "fetch-deps", "--index", url, "--out", str(tmp_path / "y"),
        "--package", "no-such-package",
    )  # fmt: skip
    assert code == 1 and "not in the package index (404)" in err


def test_flash_installs_on_the_emulated_board_and_everything_reads_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, package_index: tuple[str, dict[str, bytes]]
) -> None:
    url, packages = package_index
    data = tmp_path / "data"
    bell_id = add_bell(capsys, data)
    cache = tmp_path / "cache"
    assert cli(capsys, "firmware", "fetch-deps", "--index", url, "--out", str(cache))[0] == 0
    expected = tmp_path / "expected"
    assert cli(
        capsys, "firmware", "build", "--role", "bell", "--board", "heltec-v3", "--out",
        str(expected),
    )[0] == 0  # fmt: skip

    with Emulator(tmp_path / "board") as board:
        code, out, err = cli(
            capsys, "firmware", "flash", "--port", board.port, "--role", "bell",
            "--board", "heltec-v3", "--device", bell_id, "--index", str(cache),
            "--data-dir", str(data), "--json",
        )  # fmt: skip
        assert code == 0, err
        result = json.loads(out)
        assert result["config"]["device_id"] == bell_id
        assert {d["package"] for d in result["deps"]} == set(TEST_PACKAGES)
        assert result["verified"] == len(result["files"]) + len(result["deps"]) + 1  # + NVS
        board.wait_event(lambda e: e == "boot repl", since=2)  # it was reset

        # Read every file back through mpremote and compare with a build made here.
        wanted = {
            "/" + str(p.relative_to(expected)): p.read_bytes()
            for p in expected.rglob("*")
            if p.is_file()
        }
        wanted.update({f"/lib/{path}": blob for path, blob in packages.items()})
        t = SerialTransport(board.port, baudrate=115200, timeout=10)
        try:
            t.enter_raw_repl(soft_reset=True)
            got = {path: bytes(t.fs_readfile(path)) for path in wanted}
            t.exec("import lora.sx126x")
            chip = t.eval("lora.sx126x.CHIP")
            t.exit_raw_repl()
        finally:
            t.close()
        assert got == wanted
        assert chip == "SX1262"
        # the config, loaded by the bell's own code on the board
        cfg = on_board(board.port, LOAD_BELL_CONFIG)
        registry = Registry(db.connect(data / "anshim.db"))
        assert cfg == {
            "device_id": int(bell_id, 16),
            "key": registry.require(int(bell_id, 16)).key.hex(),
            "heartbeat_s": 1800,
        }
        # flashing again writes nothing: everything is already there
        code, out, err = cli(
            capsys, "firmware", "flash", "--port", board.port, "--role", "bell",
            "--board", "heltec-v3", "--index", str(cache),
        )  # fmt: skip
        assert code == 0, err
        assert ", 0 written," in out
    # the board kept its flash in the host folder (LittleFS stand-in) and NVS
    assert (board.flash / "lib" / "lora" / "sx126x.mpy").read_bytes() == packages["lora/sx126x.mpy"]
    assert json.loads((board.state / "nvs.json").read_text())["anshim"]["config"]


def test_flash_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with Emulator(tmp_path / "board") as board:
        code, _, err = cli(
            capsys, "firmware", "flash", "--port", board.port, "--role", "light",
            "--board", "heltec-v3", "--index", "http://127.0.0.1:9",
        )  # fmt: skip
    assert code == 1 and err.strip().splitlines()[-1].startswith("anshim: error: cannot reach")
    code, _, err = cli(
        capsys, "firmware", "flash", "--port", "/dev/nonexistent", "--role", "light",
        "--board", "heltec-v3", "--no-deps",
    )  # fmt: skip
    assert code == 1 and "cannot open /dev/nonexistent" in err


def test_provision_serial_writes_a_config_the_firmware_loads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    bell_id = add_bell(capsys, data)
    state = tmp_path / "board"
    preflash(state, "bell", "heltec-v3")
    with Emulator(state) as board:
        # not in provisioning mode: a clear error, nothing written
        code, _, err = cli(
            capsys, "provision", "serial", "--port", board.port, "--device", bell_id,
            "--data-dir", str(data), "--timeout", "1",
        )  # fmt: skip
        assert code == 1 and "is it in provisioning mode?" in err

        assert board.power_cycle(button=True) == "boot provisioning"
        board.press(False)  # the crew lets go of the button
        mark = len(board.events)
        code, out, err = cli(
            capsys, "provision", "serial", "--port", board.port, "--device", bell_id,
            "--data-dir", str(data),
        )  # fmt: skip
        assert code == 0, err
        assert f"provisioned {bell_id} on {board.port}" in out
        assert "bell heltec-v3" in err and "not provisioned" in err
        board.wait_event(lambda e: e == "provisioning ended: end", since=mark)
        board.wait_event(lambda e: e == "boot repl", since=mark)

        registry = Registry(db.connect(data / "anshim.db"))
        device = registry.require(int(bell_id, 16))
        cfg = on_board(board.port, LOAD_BELL_CONFIG)
        assert cfg == {"device_id": device.device_id, "key": device.key.hex(), "heartbeat_s": 1800}

        # rekey: the board still holds the old key; provisioning proves it and wraps the new
        assert cli(capsys, "device", "rekey", bell_id, "--data-dir", str(data))[0] == 0
        board.power_cycle(button=True)
        board.press(False)
        mark = len(board.events)
        code, out, err = cli(
            capsys, "provision", "serial", "--port", board.port, "--device", bell_id,
            "--data-dir", str(data), "--json",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["previously"] == bell_id
        board.wait_event(lambda e: e == "boot repl", since=mark)
        new_key = Registry(db.connect(data / "anshim.db")).require(device.device_id).key
        assert new_key != device.key
        assert on_board(board.port, LOAD_BELL_CONFIG)["key"] == new_key.hex()


def test_provisioning_mode_ends_by_itself(tmp_path: Path) -> None:
    state = tmp_path / "board"
    preflash(state, "light", "pico-w")
    with Emulator(state, button=True, idle_ms=300) as board:
        board.press(False)
        board.wait_event(lambda e: e == "provisioning ended: idle", timeout=20)
        board.wait_event(lambda e: e == "boot repl", timeout=20)


@pytest.mark.parametrize("source", ["database", "mqtt"])
async def test_field_test_reports_what_each_receiver_heard(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, broker: Broker, source: str
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url if source == "mqtt" else None)
    data = s.data_dir
    where = ["--data-dir", str(data)]
    if source == "mqtt":  # the gateway's config names the site (topics); ask the broker
        toml = tmp_path / "gateway.toml"
        toml.write_text(f'[gateway]\nid = "gw-test"\nsite = "seongbuk"\ndata_dir = "{data}"\n')
        where = ["--config", str(toml), "--mqtt", broker.url]
    bell_id = add_bell(capsys, data)
    device = Registry(db.connect(data / "anshim.db")).require(int(bell_id, 16))
    state = tmp_path / "board"
    preflash(state, "bell", "heltec-v3", device_config(device))
    hilltop, center = SimTransport("hilltop"), SimTransport("center")
    with Emulator(state) as board:
        async with running_gateway(s, [hilltop, center]):
            board.power_cycle(button=True)
            board.press(False)
            run = asyncio.create_task(
                asyncio.to_thread(
                    main,
                    ["field-test", "--port", board.port, *where, "--json", "--wait", "20"],
                )
            )
            for _ in range(400):
                if board.transmitted() or run.done():
                    break
                await asyncio.sleep(0.05)
            (frame,) = board.transmitted()
            hilltop.inject(frame, rssi=-112, snr=-9.5)
            center.inject(frame, rssi=-97, snr=4.25)
            code = await run
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["device_id"] == bell_id and result["selftest"]["ok"] is True
    counter = result["frame"]["counter"]
    decoded = fr.decode(frame, lambda d, direction: fr.DeviceKey.of(device.key, None))
    assert decoded.counter == counter and decoded.flags & fr.Flags.TEST
    heard = result["heard"]
    assert heard["event_id"] == fr.event_id(device.device_id, counter)
    assert heard["source"].startswith(source)
    assert heard["receptions"] == [
        {"receiver": "hilltop", "rssi": -112, "snr": -9.5},
        {"receiver": "center", "rssi": -97, "snr": 4.25},
    ]
