"""Entry point of the `anshim` console script.

Each noun lives in its own module with a ``register(subparsers)`` function that adds its
verbs; a verb's handler parses nothing itself and calls one library function. Handlers
return an exit code: 0 ok, 1 failed check, 2 usage. A `CliError` becomes a one-line
message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tools.anshim import (
    bench,
    demo,
    device,
    fieldtest,
    firmware,
    frame,
    gateway,
    power,
    provision,
    radio,
    sim,
)
from tools.anshim.common import CliError

NOUNS = (gateway, device, firmware, provision, fieldtest, radio, power, frame, sim, demo, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anshim",
        description="Anshim emergency-bell and security-light network: field and developer tools.",
    )
    sub = parser.add_subparsers(dest="noun", metavar="<noun>", required=True)
    for noun in NOUNS:
        noun.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Verbs that take field=value items accept them anywhere, also after options.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "fields") or any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.fields = [*args.fields, *extra]
    try:
        code: int = args.handler(args)
    except CliError as exc:
        print(f"anshim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("anshim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
