"""Write protocol/vectors/*.json from the gateway codec.

The vectors are fixtures: once written they are the contract, checked by both codecs in
the test suite. Re-run this only for a deliberate protocol change, and review the diff:

    .venv/bin/python -m tools.gen_vectors
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol import frames as fr
from protocol import link as ln
from protocol.errors import ProtocolError

OUT = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KEY2 = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
DEV = 0x0A000001
DEV_LIGHT = 0x0B00002A


def frame_vector(
    name: str,
    payload: fr.Payload,
    *,
    device_id: int = DEV,
    counter: int = 1,
    flags: int = 0,
    key: bytes = KEY,
    note: str = "",
) -> dict[str, Any]:
    frame = fr.Frame(device_id, counter, payload, fr.Flags(flags))
    wire = fr.encode(frame, key)
    out: dict[str, Any] = {
        "name": name,
        "type": payload.FTYPE.name,
        "direction": "up" if payload.FTYPE.direction is fr.Direction.UP else "down",
        "device_id": device_id,
        "counter": counter,
        "flags": flags,
        "key": key.hex(),
        "fields": payload.to_fields(),
        "hex": wire.hex(),
    }
    if note:
        out["note"] = note
    return out


def frames() -> list[dict[str, Any]]:
    rx = fr.Flags.RX_OPEN
    return [
        frame_vector("alarm-first-press", fr.Alarm(0, 1, 3600, 0), counter=7, flags=rx),
        frame_vector(
            "alarm-retry-tamper-low-battery",
            fr.Alarm(0, 3, 2400, fr.Alarm.TAMPER | fr.Alarm.LOW_BATTERY),
            counter=0x0001_2345,
            flags=rx | fr.Flags.RETRY,
            note="counter above 0xFFFF: only 0x2345 travels",
        ),
        frame_vector(
            "alarm-test-press",
            fr.Alarm(1, 1, 5100, fr.Alarm.EXTERNAL_POWER),
            counter=0,
            flags=rx | fr.Flags.TEST,
            key=KEY2,
        ),
        frame_vector("alarm-update", fr.AlarmUpdate(7, 4, 3580), counter=9, flags=rx),
        frame_vector("heartbeat", fr.Heartbeat(3620, 21, 1234, 0, 0x10, -97, -7), counter=100),
        frame_vector(
            "heartbeat-extremes",
            fr.Heartbeat(0, -40, 65535, 0xFF, 0xFF, -255, 127),
            counter=0xFFFF_FFFF,
        ),
        frame_vector(
            "heartbeat-cold-no-downlink",
            fr.Heartbeat(3000, -15, 0, 0x08, 0x21, 0, 0),
            counter=65536,
        ),
        frame_vector("fault-tamper", fr.Fault(fr.FaultCode.TAMPER, 1, 0), counter=12),
        frame_vector(
            "fault-lamp-cleared",
            fr.Fault(fr.FaultCode.LAMP_FAILURE, 0, 412),
            device_id=DEV_LIGHT,
            counter=300,
        ),
        frame_vector("fault-stuck-button", fr.Fault(fr.FaultCode.STUCK_BUTTON, 1, 45), counter=13),
        frame_vector(
            "light-status", fr.LightStatus(50, 412, 123456, 17), device_id=DEV_LIGHT, counter=301
        ),
        frame_vector(
            "light-status-max",
            fr.LightStatus(100, 65535, 0xFFFF_FFFF, 255),
            device_id=DEV_LIGHT,
            counter=302,
        ),
        frame_vector("selftest-pass", fr.SelfTest(0x8F, 0x8F, 3480), counter=14),
        frame_vector("selftest-buzzer-failed", fr.SelfTest(0x07, 0x05, 3440), counter=15),
        frame_vector("ack-delivered", fr.Ack(7, fr.AlarmState.DELIVERED), counter=1, flags=0),
        frame_vector(
            "ack-acknowledged-more",
            fr.Ack(9, fr.AlarmState.ACKNOWLEDGED),
            counter=2,
            flags=fr.Flags.MORE,
        ),
        frame_vector("ack-resolved", fr.Ack(0x0001_2345, fr.AlarmState.RESOLVED), counter=3),
        frame_vector("ack-plain", fr.Ack(100, fr.AlarmState.NONE), counter=4),
        frame_vector("command-set-level", fr.SetLevel(80, 30), device_id=DEV_LIGHT, counter=1),
        frame_vector("command-strobe", fr.Strobe(120), device_id=DEV_LIGHT, counter=2),
        frame_vector(
            "command-schedule", fr.Schedule(100, 40, 0, 330), device_id=DEV_LIGHT, counter=3
        ),
        frame_vector("command-reboot", fr.Reboot(), counter=5),
        frame_vector("command-config", fr.ConfigSet("hb_interval", "3600"), counter=6),
        frame_vector(
            "command-config-utf8",
            fr.ConfigSet("place", "성북 북악산 3"),
            counter=7,
            note="value is UTF-8",
        ),
        frame_vector("command-config-empty-value", fr.ConfigSet("trail", ""), counter=8),
        frame_vector("command-selftest", fr.RunSelfTest(), counter=9),
        frame_vector("time-kst", fr.Time(1_795_000_000, 36), counter=10),
        frame_vector("time-utc", fr.Time(0, 0), counter=11, key=KEY2),
    ]


def _raw(
    ftype: int,
    flags: int,
    device_id: int,
    counter: int,
    payload: bytes,
    key: bytes = KEY,
    version: int = 1,
    direction: int | None = None,
) -> bytes:
    body = bytes([(version << 5) | ftype, flags]) + device_id.to_bytes(4, "big")
    body += (counter & 0xFFFF).to_bytes(2, "big") + payload
    d = (ftype >> 4) & 1 if direction is None else direction
    return body + fr.compute_mic(key, d, device_id, counter, body)


def invalid() -> list[dict[str, Any]]:
    good = bytes.fromhex(frames()[0]["hex"])  # alarm-first-press, counter 7

    def flip(data: bytes, bit: int) -> bytes:
        b = bytearray(data)
        b[bit // 8] ^= 0x80 >> (bit % 8)
        return bytes(b)

    cases: list[tuple[str, bytes, bytes, int | None, str, int | None, str]] = [
        ("empty", b"", KEY, None, "TooShort", 0, ""),
        ("fifteen-bytes", good[:15], KEY, None, "TooShort", 15, ""),
        (
            "too-long",
            _raw(0x12, 0, DEV, 1, b"\x05\x10" + b"k" * 16 + b"v" * 31),
            KEY,
            None,
            "TooLong",
            64,
            "65 bytes",
        ),
        ("version-0", bytes([0x01]) + good[1:], KEY, None, "BadVersion", 0, ""),
        ("version-2", bytes([0x41]) + good[1:], KEY, None, "BadVersion", 0, ""),
        ("unknown-type-07", bytes([0x27]) + good[1:], KEY, None, "UnknownType", 0, ""),
        ("unknown-type-1f", bytes([0x3F]) + good[1:], KEY, None, "UnknownType", 0, ""),
        (
            "alarm-payload-5-bytes",
            _raw(0x01, 1, DEV, 7, b"\x00\x01\xb4\x00\x00"),
            KEY,
            None,
            "BadLength",
            8,
            "",
        ),
        (
            "heartbeat-payload-4-bytes",
            _raw(0x03, 0, DEV, 7, b"\x00\x01\xb4\x00"),
            KEY,
            None,
            "BadLength",
            8,
            "",
        ),
        ("command-no-opcode", _raw(0x12, 0, DEV, 1, b""), KEY, None, "BadLength", 8, ""),
        ("command-unknown-opcode", _raw(0x12, 0, DEV, 1, b"\x09"), KEY, None, "UnknownType", 8, ""),
        ("command-strobe-short", _raw(0x12, 0, DEV, 1, b"\x02\x00"), KEY, None, "BadLength", 8, ""),
        (
            "command-config-key-overruns",
            _raw(0x12, 0, DEV, 1, b"\x05\x09abc"),
            KEY,
            None,
            "BadLength",
            9,
            "",
        ),
        (
            "command-config-empty-key",
            _raw(0x12, 0, DEV, 1, b"\x05\x00"),
            KEY,
            None,
            "BadLength",
            9,
            "",
        ),
        (
            "command-set-level-101",
            _raw(0x12, 0, DEV, 1, b"\x01\x65\x00\x00"),
            KEY,
            None,
            "BadField",
            8,
            "valid MIC, level above 100 %",
        ),
        (
            "ack-state-4",
            _raw(0x11, 0, DEV, 1, b"\x00\x00\x00\x07\x04"),
            KEY,
            None,
            "BadField",
            8,
            "valid MIC, unknown alarm state",
        ),
        (
            "fault-code-0",
            _raw(0x04, 0, DEV, 1, b"\x00\x01\x00\x00"),
            KEY,
            None,
            "BadField",
            8,
            "valid MIC, fault code 0",
        ),
        (
            "selftest-passed-not-ran",
            _raw(0x06, 0, DEV, 1, b"\x01\x03\xae"),
            KEY,
            None,
            "BadField",
            8,
            "valid MIC, passed names a check that did not run",
        ),
        ("wrong-key", good, KEY2, None, "BadMic", 12, ""),
        ("mic-bit-flipped", flip(good, 8 * 19 + 7), KEY, None, "BadMic", 12, ""),
        ("payload-bit-flipped", flip(good, 8 * 9 + 7), KEY, None, "BadMic", 12, ""),
        (
            "device-id-bit-flipped",
            flip(good, 8 * 5 + 7),
            KEY,
            None,
            "BadMic",
            12,
            "the key lookup returns the same key for any device here",
        ),
        (
            "uplink-mic-as-downlink",
            _raw(0x11, 0, DEV, 1, b"\x00\x00\x00\x07\x01", direction=0),
            KEY,
            None,
            "BadMic",
            13,
            "MIC computed with DIR=up on a downlink type",
        ),
        (
            "replayed-old-counter",
            good,
            KEY,
            8,
            "CounterOutOfWindow",
            6,
            "last accepted 8: counter 7 reconstructs to 0x10007, 65535 ahead",
        ),
        (
            "replayed-very-old-counter",
            good,
            KEY,
            0x10000 - 16384 + 7,
            "BadMic",
            12,
            "last accepted 0xc007: 0x0007 reconstructs to 0x10007, in the window; MIC fails",
        ),
        (
            "counter-out-of-window",
            _raw(0x03, 0, DEV, 20000, bytes(8)),
            KEY,
            1,
            "CounterOutOfWindow",
            6,
            "20000 is 19999 past the last accepted 1",
        ),
    ]
    out = []
    for name, data, key, last, error, offset, note in cases:
        item: dict[str, Any] = {
            "name": name,
            "hex": data.hex(),
            "key": key.hex(),
            "last_counter": last,
            "error": error,
            "offset": offset,
        }
        if note:
            item["note"] = note
        out.append(item)
    # Every case must fail exactly as stated with the gateway codec.
    for item in out:
        known = fr.DeviceKey.of(bytes.fromhex(item["key"]), item["last_counter"])

        def lookup(
            device_id: int, direction: fr.Direction, k: fr.DeviceKey = known
        ) -> fr.DeviceKey:
            return k

        try:
            fr.decode(bytes.fromhex(item["hex"]), lookup)
        except ProtocolError as exc:
            assert exc.code == item["error"], (item["name"], exc)
            if item["offset"] is not None:
                assert exc.offset == item["offset"], (item["name"], exc.offset)
        else:
            raise AssertionError(f"{item['name']} decoded")
    return out


def link_messages() -> list[dict[str, Any]]:
    frame = bytes.fromhex(frames()[0]["hex"])
    msgs: list[tuple[str, ln.Message]] = [
        (
            "rx",
            ln.Rx(
                seq=0,
                tmst=123_456_789,
                rssi=-97,
                snr_x4=-30,
                freq_khz=922_100,
                sf=9,
                bw_khz=125,
                frame=frame,
            ),
        ),
        (
            "rx-strong-high-tmst",
            ln.Rx(
                seq=255,
                tmst=0xFFFF_FFF0,
                rssi=-31,
                snr_x4=38,
                freq_khz=923_300,
                sf=7,
                bw_khz=125,
                frame=frame,
            ),
        ),
        (
            "tx-at-tmst",
            ln.Tx(
                seq=1,
                mode=ln.TxMode.AT_TMST,
                tmst=124_662_613,
                freq_khz=922_100,
                sf=9,
                bw_khz=125,
                power_dbm=14,
                frame=bytes.fromhex(frames()[14]["hex"]),
            ),
        ),
        (
            "tx-now",
            ln.Tx(
                seq=2,
                mode=ln.TxMode.NOW,
                tmst=0,
                freq_khz=922_300,
                sf=12,
                bw_khz=125,
                power_dbm=-9,
                frame=bytes.fromhex(frames()[19]["hex"]),
            ),
        ),
        ("tx-done", ln.TxDone(seq=1, tmst=124_888_000, airtime_us=185_344)),
        ("tx-failed-busy", ln.TxFailed(seq=2, reason=ln.TxFailure.CHANNEL_BUSY)),
        ("tx-failed-too-late", ln.TxFailed(seq=3, reason=ln.TxFailure.TOO_LATE)),
        ("status-request", ln.StatusRequest(seq=4)),
        (
            "status",
            ln.Status(
                seq=9,
                uptime_s=86_400,
                rx_ok=1234,
                rx_bad=5,
                tx_ok=321,
                tx_failed=2,
                noise_dbm=-112,
                fw_version=0x10,
            ),
        ),
        ("log", ln.Log(seq=10, level=20, text="bridge up, SF9 922.1 MHz")),
        ("log-utf8", ln.Log(seq=11, level=30, text="채널 혼잡: LBT 재시도")),
        (
            "config",
            ln.Config(seq=5, freq_khz=922_100, sf=9, bw_khz=125, cr=5, preamble=8, power_dbm=14),
        ),
        (
            "rx-with-zeros",
            ln.Rx(
                seq=0, tmst=0, rssi=0, snr_x4=0, freq_khz=0, sf=0, bw_khz=0, frame=bytes(254 - 14)
            ),
        ),
    ]
    out = []
    for name, m in msgs:
        out.append(
            {
                "name": name,
                "kind": m.KIND.name,
                "class": type(m).__name__,
                "seq": m.seq,
                "fields": m.to_fields(),
                "hex": ln.encode_message(m).hex(),
            }
        )
    return out


def link_streams(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    w = {m["name"]: bytes.fromhex(m["hex"]) for m in messages}
    rx, log, done = w["rx"], w["log"], w["tx-done"]
    bad_crc = bytearray(ln.cobs_decode(rx[:-1]))
    bad_crc[-1] ^= 0x01
    streams = [
        ("clean-sequence", rx + done + log, ["rx", "tx-done", "log"], 0),
        ("garbage-before", b"\xde\xad\xbe\xef" + b"\x00" + rx, ["rx"], 1),
        ("garbage-no-delimiter-then-message", b"\x13\x37" + rx + log, ["log"], 1),
        ("leading-delimiters", b"\x00\x00\x00" + rx, ["rx"], 0),
        ("bad-crc-then-good", ln.cobs_encode(bytes(bad_crc)) + b"\x00" + done, ["tx-done"], 1),
        ("truncated-then-good", rx[:10] + b"\x00" + log, ["log"], 1),
        ("overflow-then-good", b"\x01" * 400 + b"\x00" + done, ["tx-done"], 1),
        (
            "unknown-kind",
            ln.cobs_encode(b"\x7f\x00" + (0x2D5FA5E5).to_bytes(4, "big")) + b"\x00" + done,
            ["tx-done"],
            1,
        ),
    ]
    out = []
    for name, data, expect, errors in streams:
        framer = ln.Framer()
        got = framer.feed(data)
        want = [ln.decode_message(w[e]) for e in expect]
        assert got == want, (name, got)
        assert framer.stats.errors == errors, (name, framer.stats)
        out.append({"name": name, "hex": data.hex(), "messages": expect, "errors": errors})
    return out


def write(name: str, data: dict[str, Any]) -> None:
    path = OUT / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write("frames.json", {"version": 1, "comment": "PROTOCOL.md sections 1-4", "frames": frames()})
    write(
        "invalid.json",
        {"version": 1, "comment": "each must raise exactly this error", "invalid": invalid()},
    )
    messages = link_messages()
    write(
        "link.json",
        {
            "version": 1,
            "comment": "PROTOCOL.md section 5",
            "messages": messages,
            "streams": link_streams(messages),
        },
    )


if __name__ == "__main__":
    main()
