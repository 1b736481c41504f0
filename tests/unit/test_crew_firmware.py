"""`anshim firmware build`, the board finder for ``--port auto``, and the mip index reader."""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from pathlib import Path

import pytest

from gateway import db
from gateway.registry import Registry
from tools.anshim.cli import main
from tools.crew import CrewError, UsageError
from tools.crew import firmware as fw
from tools.crew import mip as miplib
from tools.crew.devconfig import device_config

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "firmware" / "lib") not in sys.path:
    sys.path.insert(0, str(ROOT / "firmware" / "lib"))

from store import FileBackend, Store  # noqa: E402


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_build_lays_out_the_device_file_system(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "build"
    code, text, err = run(
        capsys, "firmware", "build", "--role", "light", "--board", "heltec-v3", "--out", str(out)
    )
    assert code == 0, err
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    lib = {f"lib/{p.stem}.mpy" for p in (ROOT / "firmware" / "lib").glob("*.py")}
    assert names == {"main.py", "light.mpy", "board.json", "manifest.json"} | lib
    # main.py stays source (the board boots it); the rest is .mpy (magic "M", v6)
    assert (out / "main.py").read_bytes() == (ROOT / "firmware/light/main.py").read_bytes()
    for name in names:
        if name.endswith(".mpy"):
            assert (out / name).read_bytes()[:2] == b"M\x06", name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["role"] == "light" and manifest["board"] == "heltec-v3"
    for path, meta in manifest["files"].items():
        data = (out / path).read_bytes()
        assert meta == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # sizes are printed, with a total
    assert f"{(out / 'lib/codec.mpy').stat().st_size:>7}  lib/codec.mpy" in text
    total = sum(m["size"] for m in manifest["files"].values())
    total += (out / "manifest.json").stat().st_size
    assert f"{total:>7}  total" in text


def test_build_with_a_device_carries_its_config_as_the_store_reads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    code, _, err = run(
        capsys, "device", "add", "--data-dir", str(data), "--kind", "light", "--name", "L",
        "--lat", "37.6", "--lon", "127.0", "--heartbeat-s", "600",
    )  # fmt: skip
    assert code == 0, err
    device = Registry(db.connect(data / "anshim.db")).require(0x0B000001)
    # a file-system board: state/config, the FileBackend record
    out = tmp_path / "pico"
    code, text, err = run(
        capsys, "firmware", "build", "--role", "light", "--board", "pico-w", "--device",
        "0b000001", "--data-dir", str(data), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "config of 0b000001 in state/config" in text
    assert stat.S_IMODE((out / "state" / "config").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    loaded = Store(FileBackend(str(out / "state"))).load_config()
    assert loaded == device_config(device)
    assert loaded["status_s"] == 600 and loaded["key"] == device.key.hex()
    # an ESP32 board: the NVS blob, same record
    out = tmp_path / "heltec"
    code, text, err = run(
        capsys, "firmware", "build", "--role", "light", "--board", "heltec-v3", "--device",
        "0b000001", "--data-dir", str(data), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    blob = (out / "nvs" / "anshim" / "config").read_bytes()
    assert blob == (tmp_path / "pico" / "state" / "config").read_bytes()
    assert not (out / "state").exists()
    # the key never reaches the terminal
    assert device.key.hex() not in text
    # a bell build for a light device is refused
    code, _, err = run(
        capsys, "firmware", "build", "--role", "bell", "--board", "pico-w", "--device",
        "0b000001", "--data-dir", str(data), "--out", str(tmp_path / "x"),
    )  # fmt: skip
    assert code == 2 and "is a light, not a bell" in err


def test_build_refuses_to_empty_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    with pytest.raises(UsageError, match="not empty and holds no Anshim build"):
        fw.build("bridge", "heltec-v3", out)
    assert (out / "thesis.txt").exists()
    fw.build("bridge", "heltec-v3", tmp_path / "b")
    fw.build("bridge", "pico-w", tmp_path / "b")  # a previous build is replaced
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["board"] == "pico-w"


def test_build_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="board 'esp8266' must be one of"):
        fw.build("bell", "esp8266", tmp_path / "x")
    boards = tmp_path / "boards"
    boards.mkdir()
    with pytest.raises(CrewError, match="no board file"):
        fw.build("bell", "lilygo-t3s3", tmp_path / "x", boards=boards)
    broken = tmp_path / "fw"
    (broken / "lib").mkdir(parents=True)
    (broken / "bell").mkdir()
    (broken / "bell" / "main.py").write_text("x = (\n")
    with pytest.raises(CrewError, match=r"mpy-cross .*main|is missing"):
        fw.build("bell", "heltec-v3", tmp_path / "y", firmware=broken)


PORTS = [
    fw.PortInfo("/dev/ttyS0", None, None, "built-in"),
    fw.PortInfo("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102", "0001"),
    fw.PortInfo("/dev/ttyACM0", 0x2E8A, 0x0005, "Board in FS mode", "E6614C"),
]


def test_port_auto_finds_exactly_one_board() -> None:
    assert fw.find_port("heltec-v3", ports=PORTS) == "/dev/ttyUSB0"
    assert fw.find_port("pico-w", ports=PORTS) == "/dev/ttyACM0"
    with pytest.raises(CrewError) as exc:
        fw.find_port("lilygo-t3s3", ports=PORTS)
    assert "no lilygo-t3s3 (USB 303a:1001 or 303a:4001) found" in str(exc.value)
    assert "/dev/ttyUSB0 (10c4:ea60 serial 0001)" in str(exc.value)
    two = [*PORTS, fw.PortInfo("/dev/ttyUSB1", 0x10C4, 0xEA60, "CP2102", "0002")]
    with pytest.raises(CrewError) as exc:
        fw.find_port("heltec-v3", ports=two)
    assert str(exc.value).startswith("2 boards match heltec-v3")
    assert "/dev/ttyUSB0" in str(exc.value) and "/dev/ttyUSB1" in str(exc.value)
    assert "use --port" in str(exc.value)


def test_mip_index_reader_follows_dependencies(tmp_path: Path) -> None:
    index = tmp_path / "pi"
    blobs = {}
    for name, deps in (("a", ["b"]), ("b", ["c"]), ("c", [])):
        data = f"# {name}\n".encode()
        h = hashlib.sha256(data).hexdigest()[:8]
        (index / "file" / h[:2]).mkdir(parents=True, exist_ok=True)
        (index / "file" / h[:2] / h).write_bytes(data)
        blobs[name] = data
        pkg = index / "package" / "6" / name
        pkg.mkdir(parents=True)
        meta = {"hashes": [[f"{name}.py", h]], "deps": [[d, "latest"] for d in deps]}
        (pkg / "latest.json").write_text(json.dumps(meta))
    plan = miplib.resolve(miplib.Index(str(index)), ["a"])
    assert [p.name for p in plan] == ["c", "b", "a"]
    result = miplib.fetch_deps(str(index), tmp_path / "cache", ["a"])
    assert result.files == 3
    assert [p.name for p in miplib.resolve(miplib.Index(str(tmp_path / "cache")), ["a"])] == [
        "c",
        "b",
        "a",
    ]
    # a tampered file is caught by its hash
    (tmp_path / "cache" / plan[0].files[0].rel).write_bytes(b"evil")
    with pytest.raises(miplib.IndexProblem, match="does not match its hash"):
        miplib.fetch_deps(str(tmp_path / "cache"), tmp_path / "c2", ["a"])
    with pytest.raises(miplib.IndexProblem, match="lacks it"):
        miplib.resolve(miplib.Index(str(tmp_path / "cache")), ["zzz"])
