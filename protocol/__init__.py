"""Anshim wire protocol v1: radio frames, MIC, counters, the bridge serial link, airtime.

Pure: bytes in, typed values out, and back. No I/O, no asyncio. `PROTOCOL.md` beside this
file is the specification.
"""
