"""`anshim gateway …`: run the gateway, check its config, show its status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gateway import db
from gateway.config import ConfigError, Settings, load_settings
from gateway.journal import Journal
from gateway.messages import iso
from gateway.registry import Registry
from gateway.service import Gateway
from tools.anshim.common import CliError, print_json


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="gateway.toml (default: none)")
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="data folder (journal, registry)"
    )


def settings_from(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config, data_dir=args.data_dir)
    except ConfigError as exc:
        raise CliError(f"config: {exc}", exit_code=2) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = subparsers.add_parser("gateway", help="run and inspect the gateway service")
    verbs = gw.add_subparsers(dest="verb", metavar="<verb>", required=True)
    run = verbs.add_parser("run", help="run the gateway until stopped")
    add_config_options(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    run.set_defaults(handler=run_command)
    check = verbs.add_parser("check-config", help="validate the config and show what would run")
    add_config_options(check)
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=check_command)
    status = verbs.add_parser("status", help="devices, alarms and outbox from the journal")
    add_config_options(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=status_command)


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.source is None:
        logging.getLogger("anshim.gateway").warning(
            "no --config: running on embedded defaults (data in %s, no upstream)",
            settings.data_dir,
        )
    try:
        asyncio.run(_run(settings))
    except OSError as exc:
        raise CliError(f"gateway: {exc}") from None
    return 0


async def _run(settings: Settings) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await Gateway(settings).run()
    logging.getLogger("anshim.gateway").info("stopped")


def check_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.json:
        print_json(
            {
                "ok": True,
                "gateway_id": settings.gateway_id,
                "site": settings.site,
                "data_dir": str(settings.data_dir),
                "topic_prefix": settings.topic_prefix,
                "summary": settings.summary(),
            }
        )
    else:
        print("config ok")
        for line in settings.summary():
            print(f"  {line}")
    return 0


def gateway_status(settings: Settings) -> dict[str, Any]:
    """What the journal says: devices (online/offline), open alarms, the outbox."""
    if not settings.database.exists():
        raise CliError(f"no gateway database in {settings.data_dir}")
    conn = db.connect(settings.database)
    try:
        registry, journal = Registry(conn), Journal(conn)
        states = journal.device_states()
        devices = registry.devices()
        offline = [d.hex_id for d in devices if not states.get(d.device_id, {}).get("online", 1)]
        alarms = [
            {
                "event_id": a.event_id,
                "device_id": f"{a.device_id:08x}",
                "state": a.state,
                "received_at": iso(a.received_at),
            }
            for a in journal.open_alarms()
        ]
        return {
            "gateway_id": settings.gateway_id,
            "data_dir": str(settings.data_dir),
            "devices": len(devices),
            "offline": offline,
            "open_alarms": alarms,
            "outbox": journal.outbox_size(),
            "at": iso(time.time()),
            **journal.counts(),
        }
    finally:
        conn.close()


def status_command(args: argparse.Namespace) -> int:
    status = gateway_status(settings_from(args))
    if args.json:
        print_json(status)
        return 0
    print(f"gateway {status['gateway_id']} ({status['data_dir']})")
    print(
        f"  devices {status['devices']}, offline {len(status['offline'])}"
        + (f": {', '.join(status['offline'][:10])}" if status["offline"] else "")
    )
    print(f"  open alarms {len(status['open_alarms'])}")
    for a in status["open_alarms"]:
        print(f"    {a['event_id']}  {a['state']:<12} since {a['received_at']}")
    print(
        f"  outbox {status['outbox']} waiting; journal {status['events']} events,"
        f" {status['alarms']} alarms"
    )
    return 0
