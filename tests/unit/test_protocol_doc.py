"""PROTOCOL.md's worked examples are the vectors' bytes (the doc cannot drift from them)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, load_vectors

DOC = (ROOT / "protocol" / "PROTOCOL.md").read_text(encoding="utf-8")
FRAMES = {v["name"]: v for v in load_vectors("frames.json")["frames"]}
LINK = {v["name"]: v for v in load_vectors("link.json")["messages"]}


def spaced(hex_text: str) -> str:
    return " ".join(re.findall("..", hex_text))


@pytest.mark.parametrize(
    "name", ["alarm-first-press", "heartbeat", "ack-delivered", "command-config"]
)
def test_frame_examples_show_the_vector_header_and_mic(name: str) -> None:
    wire = FRAMES[name]["hex"]
    assert spaced(wire[-16:]) in DOC  # the MIC
    assert spaced(wire[:16]) in DOC or spaced(wire[:4]) in DOC  # the header


@pytest.mark.parametrize("name", ["tx-done", "rx"])
def test_link_examples_show_the_wire_bytes(name: str) -> None:
    wire = spaced(LINK[name]["hex"])
    flat = " ".join(DOC.split())
    assert wire in flat
