"""``python -m workers.emulator``: run the emulator until SIGINT/SIGTERM.

Prints one line ``aiml-stt emulator listening on http://HOST:PORT`` once it accepts
connections (with ``--port 0`` this is how a caller learns the port the OS picked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from workers.emulator.app import MAX_UPLOAD_BYTES, build_app
from workers.emulator.config import (
    DEFAULT_API_KEY,
    Dialect,
    EmulatorConfig,
    FaultSpec,
    parse_fault_assignment,
)
from workers.emulator.models import parse_models
from workers.emulator.timing import REALISTIC

__all__ = ["build_parser", "config_from_args", "main"]

READY_PREFIX = "aiml-stt emulator listening on "
SHUTDOWN_TIMEOUT = 1.0


def build_parser(prog: str = "python -m workers.emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Emulate the AI/ML API's async speech-to-text endpoints (docs/emulator.md).",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=8089, help="port; 0 picks a free one (default 8089)")
    add("--api-key", action="append", dest="api_keys", metavar="KEY",
        help=f"accepted Bearer key, repeatable (default {DEFAULT_API_KEY})")  # fmt: skip
    add("--retention", type=float, default=3600.0, metavar="SECONDS",
        help="finished jobs answer 404 and are purged after this (default 3600)")  # fmt: skip
    add("--speed", type=float, default=0.1, metavar="FRACTION",
        help="processing time = FRACTION x audio duration (default 0.1)")  # fmt: skip
    add("--fixed", type=float, default=None, metavar="SECONDS",
        help="processing time = SECONDS whatever the duration (overrides --speed)")  # fmt: skip
    add("--queue-delay", type=float, default=0.5, metavar="SECONDS",
        help="time in the first pending state before processing (default 0.5)")  # fmt: skip
    add("--realistic", action="store_true",
        help="random server times as a real service shows: " + ", ".join(
            f"{k}={v:g}" for k, v in REALISTIC.items()) + " (docs/emulator.md)")  # fmt: skip
    add("--spread", type=float, default=None, metavar="SIGMA",
        help="lognormal spread of the processing time (default 0: exact)")  # fmt: skip
    add("--dialect", choices=[d.value for d in Dialect], default=Dialect.CLASSIC.value,
        help="answer variant: status words and envelope (default classic)")  # fmt: skip
    add("--seed", type=int, default=0, help="seed of the fault dice (default 0)")
    add("--fault", action="append", default=[], metavar="KEY=VALUE",
        help="fault setting for both endpoints, e.g. rate_503=0.1, latency_ms=200-800")  # fmt: skip
    add("--fault-create", action="append", default=[], metavar="KEY=VALUE",
        help="fault setting for POST /v1/stt/create only (replaces --fault there)")  # fmt: skip
    add("--fault-get", action="append", default=[], metavar="KEY=VALUE",
        help="fault setting for GET /v1/stt/{id} only (replaces --fault there)")  # fmt: skip
    add("--model", action="append", default=[], dest="models", metavar="ID=FAM",
        help="also serve model ID, answering like FAM (openai, deepgram, assemblyai)")  # fmt: skip
    add("--max-body-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20, metavar="MIB",
        help="larger request bodies are answered 413 (default 256)")  # fmt: skip
    add("--access-log", action="store_true", help="log every request to stderr (slower)")
    return parser


def _faults(assignments: list[str]) -> FaultSpec:
    return FaultSpec.from_mapping(dict(parse_fault_assignment(a) for a in assignments))


def _timing(args: argparse.Namespace) -> dict[str, float]:
    timing: dict[str, float] = dict(REALISTIC) if args.realistic else {}
    if args.spread is not None:
        timing["spread"] = args.spread
    return timing


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The start-up config for parsed arguments; ``ValueError`` names a bad setting."""
    return EmulatorConfig(
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        retention=args.retention,
        speed=args.speed,
        fixed=args.fixed,
        queue_delay=args.queue_delay,
        **_timing(args),
        dialect=Dialect(args.dialect),
        seed=args.seed,
        faults=_faults(args.fault),
        faults_create=_faults(args.fault_create) if args.fault_create else None,
        faults_get=_faults(args.fault_get) if args.fault_get else None,
        models=parse_models(dict(parse_fault_assignment(a) for a in args.models)),
    )


async def serve(app: web.Application, host: str, port: int, access_log: bool) -> None:
    """Run ``app`` until SIGINT or SIGTERM, announcing the bound address once ready."""
    # Hung requests (the hang fault) must not hold up a stop: give in-flight ones 1 s.
    options: dict[str, Any] = {"handle_signals": False, "shutdown_timeout": SHUTDOWN_TIMEOUT}
    if not access_log:
        options["access_log"] = None
    runner = web.AppRunner(app, **options)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"{READY_PREFIX}http://{shown}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Entry point for ``python -m workers.emulator`` and ``stt-workers emulator``."""
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.max_body_mb <= 0:
        parser.error("--max-body-mb must be positive")
    if args.access_log:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        app = build_app(config, max_body_bytes=int(args.max_body_mb * 2**20))
        asyncio.run(serve(app, args.host, args.port, args.access_log))
    except OSError as exc:  # e.g. the port is taken
        print(f"emulator: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
