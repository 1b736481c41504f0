"""firmware/lib/provision.py in the real MicroPython: requests made by the host code
(tools/crew/provisioning.py) are answered by the device module, and the config it stores
is the one the bell's own `parse_config` loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools.crew import provisioning as host

from .conftest import ROOT, MicroPython, firmware_lib

pytestmark = pytest.mark.micropython

NONCES = [bytes([i]) * 16 for i in range(1, 8)]  # the device's rand(), in order

SCRIPT = """
import json
import binascii
import provision as p
import bell
from store import FileBackend, Store

def unhex(s):
    return binascii.unhexlify(s)

with open("/req.json") as f:
    job = json.load(f)

nonces = [unhex(n) for n in job["nonces"]]
def rand(n):
    return nonces.pop(0)

class Service:
    def selftest(self):
        return {"ok": True}
    def send_test(self):
        return {"type": "alarm", "counter": 7}

store = Store(FileBackend("/state"))
prov = p.Provisioner(store, info={"role": "bell"}, rand=rand, service=Service(),
                     validate=bell.parse_config)
replies = [binascii.hexlify(prov.handle(unhex(r))).decode() for r in job["requests"]]
cfg = bell.parse_config(store.load_config())
k1, k2 = unhex(job["k1"]), unhex(job["k2"])
crypto = {
    "key_check": p.key_check(k1),
    "mac": binascii.hexlify(p.request_mac(k1, 3, nonces[0], b"abc")).decode(),
    "wrap": binascii.hexlify(p.wrap_key(k1, bytes(16), k2)).decode(),
    "chunks": [binascii.hexlify(c).decode() for c in p.chunks(bytes(range(50)), 20)],
}
print(json.dumps({"replies": replies, "device_id": cfg["device_id"],
                  "key": binascii.hexlify(cfg["key"]).decode(), "done": prov.done,
                  "crypto": crypto}))
"""


def test_device_module_answers_the_host_in_micropython(
    micropython: MicroPython, tmp_path: Path
) -> None:
    k1, k2 = os.urandom(16), os.urandom(16)
    base = {"device_id": "0a000001", "kind": "bell", "sf": 9, "lat": 37.6035, "lon": 126.98}
    first = json.dumps({**base, "key": k1.hex()}).encode()
    second = json.dumps({**base, "key_wrapped": host.wrap_key(k1, NONCES[1], k2).hex()}).encode()
    forged = json.dumps({**base, "sf": 7}).encode()
    op = host.Op
    requests = [
        host.encode_request(op.HELLO, 1),  # nonce 1
        host.encode_request(op.WRITE, 2, NONCES[0] + bytes(32) + first),
        host.encode_request(op.HELLO, 3),  # nonce 2
        host.encode_request(
            op.WRITE, 4, NONCES[1] + host.request_mac(k1, op.WRITE, NONCES[1], second) + second
        ),
        host.encode_request(op.HELLO, 5),  # nonce 3
        host.encode_request(
            op.WRITE, 6, NONCES[2] + host.request_mac(k1, op.WRITE, NONCES[2], forged) + forged
        ),  # signed with the old key: refused
        host.encode_request(op.READ, 7),
        host.encode_request(op.HELLO, 8),  # nonce 4
        host.encode_request(op.TEST, 9, NONCES[3] + host.request_mac(k2, op.TEST, NONCES[3], b"")),
        host.encode_request(op.END, 10),
    ]
    job = tmp_path / "req.json"
    job.write_text(
        json.dumps(
            {
                "requests": [r.hex() for r in requests],
                "nonces": [n.hex() for n in NONCES],
                "k1": k1.hex(),
                "k2": k2.hex(),
            }
        )
    )
    out = micropython.run(
        SCRIPT,
        [*firmware_lib(), ROOT / "firmware" / "bell" / "bell.py"],
        data={"/req.json": job},
    )
    result = json.loads(out.strip().splitlines()[-1])
    replies = [host.decode_reply(bytes.fromhex(r)) for r in result["replies"]]
    assert [r.seq for r in replies] == list(range(1, 11))
    st = host.Status
    assert [r.status for r in replies] == [st.OK] * 5 + [st.AUTH_FAILED] + [st.OK] * 4
    assert replies[0].json()["provisioned"] is False and replies[0].json()["role"] == "bell"
    assert replies[1].json() == {"device_id": "0a000001", "key_check": host.key_check(k1)}
    assert replies[3].json()["key_check"] == host.key_check(k2)
    hello = replies[4].json()
    assert hello["provisioned"] is True and hello["nonce"] == NONCES[2].hex()
    read = replies[6].json()
    assert read["key_check"] == host.key_check(k2) and "key" not in read["config"]
    assert read["config"]["sf"] == 9 and read["config"]["lat"] == 37.6035
    assert replies[8].json() == {"selftest": {"ok": True}, "frame": {"type": "alarm", "counter": 7}}
    assert result["done"] is True
    assert result["device_id"] == 0x0A000001 and result["key"] == k2.hex()
    crypto = result["crypto"]
    assert crypto["key_check"] == host.key_check(k1)
    assert crypto["wrap"] == host.wrap_key(k1, bytes(16), k2).hex()
    assert crypto["mac"] == host.request_mac(k1, 3, NONCES[4], b"abc").hex()
    assert crypto["chunks"] == [c.hex() for c in host.chunk(bytes(range(50)), 20)]
