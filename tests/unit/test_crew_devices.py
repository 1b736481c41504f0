"""`anshim device …`: the registry as the crew uses it, through the real CLI entry point."""

from __future__ import annotations

import csv
import io
import json
import stat
import time
from pathlib import Path

import pytest

from gateway import db
from gateway.config import load_settings
from gateway.registry import Registry
from tools.anshim.cli import main
from tools.crew import devices as dv


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def add(capsys: pytest.CaptureFixture[str], data: Path, *extra: str) -> str:
    code, out, err = run(
        capsys,
        "device", "add", "--data-dir", str(data), "--kind", "bell",
        "--name", "형제봉 입구 비상벨", "--lat", "37.6035", "--lon", "126.9817",
        *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


def registry(data: Path) -> Registry:
    return Registry(db.connect(data / "anshim.db"))


def test_add_prints_the_id_and_never_the_key_by_default(
    capsys: pytest.CaptureFixture[str], data: Path
) -> None:
    out = add(capsys, data, "--national-point-number", "다사5678 1234", "--camera", "C1", "C2")
    assert out.strip() == "0a000001"
    device = registry(data).require(0x0A000001)
    assert len(device.key) == 16
    assert device.place.national_point_number == "다사 5678 1234"
    assert device.cameras == ("C1", "C2")
    # the key is nowhere in what the crew sees, unless asked for
    for argv in (("device", "show", "0a000001"), ("device", "list", "--json")):
        code, out, _ = run(capsys, *argv, "--data-dir", str(data))
        assert code == 0 and device.key.hex() not in out
    code, out, _ = run(capsys, "device", "show", "0a000001", "--show-key", "--data-dir", str(data))
    assert device.key.hex() in out
    out = add(capsys, data, "--show-key", "--json")
    shown = json.loads(out)
    assert shown["device_id"] == "0a000002"
    assert bytes.fromhex(shown["key"]) == registry(data).require(0x0A000002).key


def test_database_files_are_private(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    add(capsys, data)
    conn = db.connect(data / "anshim.db")  # hold it open: the WAL files exist meanwhile
    conn.execute("UPDATE devices SET name = name")
    files = sorted(data.iterdir())
    assert {p.name for p in files} >= {"anshim.db", "anshim.db-wal"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    conn.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--lat", "35.0", "--lon", "139.7"), "outside South Korea"),
        (("--national-point-number", "다사 567 1234"), "national point number"),
        (("--national-point-number", "AB 5678 1234"), "national point number"),
        (("--national-point-number", "다사 ٥٦٧٨ 1234"), "national point number"),
        (("--national-point-number", "다햏 5678 1234"), "grid letters"),
        (("--heartbeat-s", "5"), "heartbeat"),
        (("--name", " "), "--name"),
    ],
)
def test_bad_values_are_named_in_one_line(
    capsys: pytest.CaptureFixture[str], data: Path, extra: tuple[str, ...], message: str
) -> None:
    code, out, err = run(
        capsys,
        "device", "add", "--data-dir", str(data), "--kind", "light",
        "--name", "가로등", "--lat", "37.5", "--lon", "127.0", *extra,
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_anywhere_allows_a_place_outside_korea(
    capsys: pytest.CaptureFixture[str], data: Path
) -> None:
    code, _, err = run(
        capsys,
        "device", "add", "--data-dir", str(data), "--kind", "light",
        "--name", "test bench", "--lat", "35.0", "--lon", "139.7", "--anywhere",
    )  # fmt: skip
    assert code == 0, err


def test_list_show_retire_rekey(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    add(capsys, data)
    code, _, _ = run(
        capsys,
        "device", "add", "--data-dir", str(data), "--kind", "light",
        "--name", "정릉천 보안등 12", "--lat", "37.6", "--lon", "127.01", "--heartbeat-s", "900",
    )  # fmt: skip
    code, out, _ = run(capsys, "device", "list", "--data-dir", str(data), "--json")
    rows = json.loads(out)
    assert [(r["device_id"], r["kind"]) for r in rows] == [
        ("0a000001", "bell"),
        ("0b000001", "light"),
    ]
    code, out, _ = run(capsys, "device", "list", "--kind", "light", "--data-dir", str(data))
    assert "0b000001" in out and "0a000001" not in out

    # offline: what the gateway recorded in device_state
    conn = db.connect(data / "anshim.db")
    conn.execute("UPDATE device_state SET online = 0, last_seen = ? WHERE device_id = ?",
                 (time.time(), 0x0B000001))  # fmt: skip
    conn.close()
    code, out, _ = run(capsys, "device", "list", "--offline", "--json", "--data-dir", str(data))
    assert [r["device_id"] for r in json.loads(out)] == ["0b000001"]
    assert json.loads(out)[0]["online"] is False

    old_key = registry(data).require(0x0A000001).key
    code, out, _ = run(capsys, "device", "rekey", "0a000001", "--data-dir", str(data))
    assert code == 0 and "provision" in out
    reg = registry(data)
    new_key = reg.require(0x0A000001).key
    assert new_key != old_key and new_key.hex() not in out
    assert reg.previous_keys(0x0A000001) == [old_key]

    code, out, _ = run(capsys, "device", "retire", "0a000001", "--data-dir", str(data))
    assert code == 0
    code, out, _ = run(capsys, "device", "list", "--json", "--data-dir", str(data))
    assert [r["device_id"] for r in json.loads(out)] == ["0b000001"]
    code, out, _ = run(capsys, "device", "list", "--all", "--json", "--data-dir", str(data))
    assert len(json.loads(out)) == 2
    code, _, err = run(capsys, "device", "retire", "0a000001", "--data-dir", str(data))
    assert code == 1 and "already retired" in err

    code, _, err = run(capsys, "device", "show", "0a0000ff", "--data-dir", str(data))
    assert code == 1 and "no device 0a0000ff" in err
    code, _, err = run(capsys, "device", "show", "zz", "--data-dir", str(data))
    assert code == 2 and "hex" in err


def test_no_database_is_a_clear_error(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, _, err = run(capsys, "device", "list", "--data-dir", str(data))
    assert code == 1 and "no gateway database" in err
    assert not data.exists()


def test_gateway_config_file_chooses_the_data_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[gateway]\ndata_dir = "gwdata"\n', encoding="utf-8")
    code, _, err = run(
        capsys,
        "device", "add", "--config", str(cfg), "--kind", "bell", "--name", "a",
        "--lat", "37.5", "--lon", "127",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "gwdata" / "anshim.db").exists()
    assert load_settings(cfg).database == tmp_path / "gwdata" / "anshim.db"


# --- CSV --------------------------------------------------------------------------------

HEADER = "kind,name,lat,lon,national_point_number,plate_id,trail,cameras,heartbeat_s\n"


def write_fleet(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER)
        for i in range(n):
            kind = "bell" if i % 3 else "light"
            lat = 37.45 + (i % 100) * 0.002
            lon = 126.9 + (i // 100) * 0.002
            npn = f"다사 {5000 + i % 1000:04d} {1000 + i // 1000:04d}"
            f.write(
                f"{kind},성북 {kind} {i},{lat:.5f},{lon:.5f},{npn},SB-{i:05d},북악하늘길,"
                f"CCTV-{i};CCTV-{i + 1},{3600 if kind == 'bell' else ''}\n"
            )


def test_import_5000_rows_in_one_go(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    fleet = tmp_path / "devices.csv"
    write_fleet(fleet, 5000)
    started = time.monotonic()
    code, out, err = run(capsys, "device", "import", str(fleet), "--data-dir", str(data))
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert "imported 5000 devices" in out and "1667 light" in out and "3333 bell" in out
    assert "importing devices.csv: 5000/5000" in err  # the progress line (stderr is no tty)
    reg = registry(data)
    devices = reg.devices()
    assert len(devices) == 5000
    assert len({d.key for d in devices}) == 5000
    d = next(d for d in devices if d.place.label == "성북 bell 1")
    assert d.place.national_point_number == "다사 5001 1000"
    assert d.cameras == ("CCTV-1", "CCTV-2") and d.heartbeat_s == 3600
    assert elapsed < 30  # generous: it takes about a second


def test_a_bad_row_names_its_line_and_field_and_nothing_is_imported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    add(capsys, data)
    fleet = tmp_path / "devices.csv"
    write_fleet(fleet, 5000)
    lines = fleet.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = lines[4000].split(",")
    bad[2] = "37,5"  # a decimal comma: the CSV now has one value too many
    lines[4000] = ",".join(bad[:2]) + ',"37,5",' + ",".join(bad[3:])
    fleet.write_text("".join(lines), encoding="utf-8")
    code, _, err = run(capsys, "device", "import", str(fleet), "--data-dir", str(data))
    assert code == 1
    assert err.strip().endswith("nothing was imported")
    assert "devices.csv line 4001, field lat: '37,5' is not a number" in err
    assert [d.hex_id for d in registry(data).devices()] == ["0a000001"]


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("bell,a,37.5,127,다사 12 34,,,,", "national_point_number", "4+4 digits"),
        ("lamp,a,37.5,127,,,,,", "kind", "must be one of"),
        ("bell,,37.5,127,,,,,", "name", "must not be empty"),
        ("bell,a,45.5,127,,,,,", "lat", "outside South Korea"),
        ("bell,a,37.5,12.7,,,,,", "lon", "outside South Korea"),
        ("bell,a,37.5,127,,,,,3", "heartbeat_s", "between"),
        ("bell,a,37.5,127,,,,,hourly", "heartbeat_s", "whole number"),
    ],
)
def test_each_bad_field_is_named(tmp_path: Path, row: str, field: str, message: str) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(HEADER + "bell,ok,37.5,127,,,,,\n" + row + "\n", encoding="utf-8")
    with pytest.raises(dv.CsvProblem) as exc:
        dv.read_csv(fleet)
    assert exc.value.line == 3 and exc.value.column == field
    assert str(exc.value).startswith(f"fleet.csv line 3, field {field}: ")
    assert message in str(exc.value)


def test_header_problems(tmp_path: Path) -> None:
    fleet = tmp_path / "f.csv"
    fleet.write_text("kind,name,lat,lon,colour\n", encoding="utf-8")
    with pytest.raises(dv.CsvProblem, match="line 1, field colour: unknown column"):
        dv.read_csv(fleet)
    fleet.write_text("kind,name,lat\n", encoding="utf-8")
    with pytest.raises(dv.CsvProblem, match="field lon: required column is missing"):
        dv.read_csv(fleet)
    fleet.write_text("", encoding="utf-8")
    with pytest.raises(dv.CsvProblem, match="empty file"):
        dv.read_csv(fleet)


def test_duplicate_and_existing_ids_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    add(capsys, data)
    fleet = tmp_path / "f.csv"
    fleet.write_text(
        "device_id,kind,name,lat,lon\n0a000010,bell,a,37.5,127\n0a000010,bell,b,37.5,127\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "device", "import", str(fleet), "--data-dir", str(data))
    assert code == 1 and "line 3, field device_id: 0a000010 is also on line 2" in err
    fleet.write_text("device_id,kind,name,lat,lon\n0a000001,bell,a,37.5,127\n", encoding="utf-8")
    code, _, err = run(capsys, "device", "import", str(fleet), "--data-dir", str(data))
    assert code == 1 and "line 2, field device_id: 0a000001 is already registered" in err


def test_export_import_round_trip_with_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    fleet = tmp_path / "devices.csv"
    write_fleet(fleet, 30)
    assert run(capsys, "device", "import", str(fleet), "--data-dir", str(first))[0] == 0
    code, out, _ = run(capsys, "device", "export", "--data-dir", str(first))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 30 and "key" not in rows[0]
    keys_file = tmp_path / "with-keys.csv"
    code, _, err = run(
        capsys, "device", "export", "--with-keys", "--out", str(keys_file),
        "--data-dir", str(first),
    )  # fmt: skip
    assert code == 0 and "exported 30" in err
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert run(capsys, "device", "import", str(keys_file), "--data-dir", str(second))[0] == 0
    a, b = registry(first).devices(), registry(second).devices()
    assert [(d.device_id, d.key, d.place, d.cameras, d.heartbeat_s) for d in a] == [
        (d.device_id, d.key, d.place, d.cameras, d.heartbeat_s) for d in b
    ]


def test_registry_api_used_by_the_gateway_still_works(tmp_path: Path) -> None:
    reg = Registry(db.connect(tmp_path / "x.db"))
    added: list[object] = []
    n = reg.add_many(
        [
            {"kind": "bell", "place": dv.Place(lat=37.5, lon=127.0, label="a")},
            {"kind": "light", "place": dv.Place(lat=37.5, lon=127.001, label="b")},
        ]
    )
    assert n == 2 and added == []
    assert [d.kind for d in reg.devices()] == ["bell", "light"]
    assert dict(reg.active_keys()).keys() == {0x0A000001, 0x0B000001}
    assert [d.hex_id for d, _ in reg.nearby(reg.require(0x0A000001).place, 200, kind="light")] == [
        "0b000001"
    ]
    assert reg.previous_keys(0x0A000001) == []
