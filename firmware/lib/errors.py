"""The device's copy of the wire error tree (PROTOCOL.md section 7).

Same class names as the gateway's `protocol/errors.py`, so a test can compare the two
codecs by name, but only what MicroPython needs: a message and the byte offset where
decoding stopped. The device's decoders (`codec`, `link`) raise nothing else, whatever
bytes arrive.
"""


class ProtocolError(Exception):
    def __init__(self, message, offset=None):
        super().__init__(message)
        self.message = message
        self.offset = offset

    def __str__(self):
        if self.offset is None:
            return self.message
        return "%s at offset %d" % (self.message, self.offset)

    @property
    def code(self):
        """The error's name as used in the vectors and counters, e.g. ``"BadMic"``."""
        return type(self).__name__


class TooShort(ProtocolError):
    pass


class TooLong(ProtocolError):
    pass


class BadVersion(ProtocolError):
    pass


class UnknownType(ProtocolError):
    pass


class BadLength(ProtocolError):
    pass


class BadField(ProtocolError):
    pass


class UnknownDevice(ProtocolError):
    pass


class CounterOutOfWindow(ProtocolError):
    pass


class BadMic(ProtocolError):
    pass


class BadCrc(ProtocolError):
    pass


class BadFraming(ProtocolError):
    pass
