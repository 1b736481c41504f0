# Runs inside MicroPython (see test_codec_vectors.py): every vector of
# protocol/vectors/ through the firmware codec, results printed as one JSON line that
# the CPython side compares with the vectors. Only MicroPython-available modules here.

import json
import random
from binascii import unhexlify

import codec
import link
from errors import ProtocolError

FAST = {
    "ALARM": "encode_alarm",
    "ALARM_UPDATE": "encode_alarm_update",
    "HEARTBEAT": "encode_heartbeat",
    "FAULT": "encode_fault",
    "LIGHT_STATUS": "encode_light_status",
    "SELFTEST": "encode_selftest",
}


def load(name):
    with open("/vectors/" + name) as f:
        return json.load(f)


def outcome(fn, *args):
    """What a call did: its result, the ProtocolError it raised, or any other crash."""
    try:
        return {"ok": fn(*args)}
    except ProtocolError as e:
        return {"error": e.code, "offset": e.offset}
    except Exception as e:  # reported as a crash: never expected
        return {"crash": f"{type(e).__name__}: {e}"}


def jsonable(msg):
    kind, seq, fields = msg
    out = {}
    for k in fields:
        v = fields[k]
        out[k] = v.hex() if isinstance(v, (bytes, bytearray)) else v
    return [kind, seq, out]


def frame_results(vectors):
    results = {}
    for v in vectors:
        key = unhexlify(v["key"])
        fields = v["fields"]
        r = {}
        enc = outcome(
            codec.encode, v["type"], v["device_id"], v["counter"], v["flags"], fields, key
        )
        r["encode"] = enc["ok"].hex() if "ok" in enc else enc
        c = codec.Codec(v["device_id"], key)
        if v["type"] in FAST:
            args = [fields[n] for n in codec.FIELD_NAMES[v["type"]]]
            fast = outcome(getattr(c, FAST[v["type"]]), v["counter"], v["flags"], *args)
            r["fast"] = bytes(fast["ok"]).hex() if "ok" in fast else fast
        data = unhexlify(v["hex"])
        last = max(v["counter"] - 100, 0)
        r["decode"] = outcome(codec.decode, data, key, last)
        r["codec_decode"] = outcome(c.decode, data, last)
        r["new_device"] = outcome(codec.decode, data, key, None)
        results[v["name"]] = r
    return results


def invalid_results(vectors):
    results = {}
    for v in vectors:
        data = unhexlify(v["hex"])
        results[v["name"]] = outcome(codec.decode, data, unhexlify(v["key"]), v["last_counter"])
    return results


def link_results(doc):
    messages = {}
    for m in doc["messages"]:
        fields = dict(m["fields"])
        if "frame" in fields:
            fields["frame"] = unhexlify(fields["frame"])
        r = {}
        enc = outcome(link.encode, m["kind"], m["seq"], fields)
        r["encode"] = enc["ok"].hex() if "ok" in enc else enc
        dec = outcome(link.decode, unhexlify(m["hex"]))
        r["decode"] = jsonable(dec["ok"]) if "ok" in dec else dec
        if m["kind"] == "RX":
            f = fields
            w = link.Writer()
            rx = outcome(
                w.rx, m["seq"], f["tmst"], f["rssi"], f["snr_x4"], f["freq_khz"], f["sf"],
                f["bw_khz"], f["frame"],
            )  # fmt: skip
            r["writer_rx"] = bytes(rx["ok"]).hex() if "ok" in rx else rx
        messages[m["name"]] = r
    streams = {}
    for s in doc["streams"]:
        data = unhexlify(s["hex"])
        whole = link.Framer()
        got = whole.feed(data)
        split = link.Framer()  # the same bytes as a UART delivers them: in pieces
        pieces = []
        i = 0
        while i < len(data):
            n = 1 + (i * 7) % 13
            pieces += split.feed(memoryview(data)[i : i + n])
            i += n
        streams[s["name"]] = {
            "messages": [jsonable(m) for m in got],
            "errors": whole.errors,
            "split_messages": [jsonable(m) for m in pieces],
            "split_errors": split.errors,
        }
    return {"messages": messages, "streams": streams}


def mutation_crashes(frames, invalid, link_doc, rounds):
    """Decoders must raise only ProtocolError: flip, cut and splice the vectors."""
    random.seed(20261126)
    crashes = []
    samples = [(unhexlify(v["hex"]), unhexlify(v["key"])) for v in frames + invalid]
    for _ in range(rounds):
        data, key = samples[random.getrandbits(16) % len(samples)]
        b = bytearray(data)
        op = random.getrandbits(2)
        if op == 0 and b:
            b[random.getrandbits(16) % len(b)] ^= 1 << random.getrandbits(3)
        elif op == 1:
            b = b[: random.getrandbits(16) % (len(b) + 1)]
        elif op == 2:
            b += bytes(random.getrandbits(8) for _ in range(random.getrandbits(6)))
        else:
            b[random.getrandbits(16) % 16 if len(b) >= 16 else 0 : len(b)] = bytes(
                random.getrandbits(8) for _ in range(random.getrandbits(5))
            )
        r = outcome(codec.decode, bytes(b), key, random.getrandbits(17))
        if "crash" in r:
            crashes.append([b.hex(), r["crash"]])
    wires = [unhexlify(m["hex"]) for m in link_doc["messages"]]
    wires += [unhexlify(s["hex"]) for s in link_doc["streams"]]
    for _ in range(rounds):
        b = bytearray(wires[random.getrandbits(16) % len(wires)])
        for _ in range(1 + random.getrandbits(2)):
            if b:
                b[random.getrandbits(16) % len(b)] = random.getrandbits(8)
        r = outcome(link.decode, bytes(b))
        if "crash" in r:
            crashes.append([b.hex(), r["crash"]])
        try:
            link.Framer().feed(bytes(b))
        except Exception as e:
            crashes.append([b.hex(), f"Framer: {type(e).__name__}: {e}"])
    return crashes


def crc_fallback_agrees():
    """The table-driven CRC-32 (for ports without binascii.crc32) matches the built-in."""
    from binascii import crc32

    samples = [b"", b"123456789", bytes(range(256)), bytes(300)]
    return all(link.crc32_soft(s) == crc32(s) for s in samples)


frames = load("frames.json")["frames"]
invalid = load("invalid.json")["invalid"]
link_doc = load("link.json")
print(
    json.dumps(
        {
            "frames": frame_results(frames),
            "invalid": invalid_results(invalid),
            "link": link_results(link_doc),
            "crashes": mutation_crashes(frames, invalid, link_doc, 2000),
            "crc_fallback_agrees": crc_fallback_agrees(),
        }
    )
)
