"""The one exception tree every Anshim decoder raises.

Whatever bytes arrive, a decoder raises only `ProtocolError` or a subclass. Each carries
the byte offset where decoding stopped and what was expected there, so a log line or a
crew's `anshim frame decode` can say exactly what was wrong.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of all wire-format errors."""

    def __init__(self, message: str, *, offset: int | None = None, expected: str | None = None):
        self.message = message
        self.offset = offset
        self.expected = expected
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.message
        if self.expected is not None:
            text += f" (expected {self.expected})"
        if self.offset is not None:
            text += f" at offset {self.offset}"
        return text

    @property
    def code(self) -> str:
        """The error's name as used in the vectors and in counters, e.g. ``"BadMic"``."""
        return type(self).__name__


class TooShort(ProtocolError):
    """Fewer bytes than the fixed part of the message needs."""


class TooLong(ProtocolError):
    """More bytes than the largest message allowed."""


class BadVersion(ProtocolError):
    """The version field is not one this codec speaks."""


class UnknownType(ProtocolError):
    """Unknown frame type, command opcode or bridge message kind."""


class BadLength(ProtocolError):
    """A payload or field length differs from its type's."""


class BadField(ProtocolError):
    """A field value outside its allowed range."""


class UnknownDevice(ProtocolError):
    """No key is known for the device id."""


class CounterOutOfWindow(ProtocolError):
    """The reconstructed frame counter is too far past the last accepted one."""


class BadMic(ProtocolError):
    """The message integrity code does not match: wrong key, corrupted or forged frame."""


class BadCrc(ProtocolError):
    """The bridge link CRC does not match."""


class BadFraming(ProtocolError):
    """The bridge link's COBS framing is malformed."""


ERRORS: dict[str, type[ProtocolError]] = {
    cls.__name__: cls
    for cls in (
        ProtocolError,
        TooShort,
        TooLong,
        BadVersion,
        UnknownType,
        BadLength,
        BadField,
        UnknownDevice,
        CounterOutOfWindow,
        BadMic,
        BadCrc,
        BadFraming,
    )
}
