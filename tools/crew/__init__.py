"""The crew's library: device registry, firmware build and flash, provisioning, field test.

The `anshim` CLI nouns (`device`, `firmware`, `provision`, `field-test`) are thin
wrappers around these modules; everything here raises `CrewError` (or a subclass) with
a one-line message naming the bad value, and never prints.
"""


class CrewError(Exception):
    """A failure the crew can act on; the message is one line and names the bad value."""


class UsageError(CrewError):
    """The command was given a bad value (exit code 2 in the CLI)."""
