"""How many polls per second one emulator process serves, and whether its memory stays flat.

Run from the repository root (takes about a minute)::

    .venv/bin/python -m bench.emulator_capacity            # prints a table
    .venv/bin/python -m bench.emulator_capacity --json     # machine-readable

Phase 1 (throughput): the emulator runs as its own process; ``--jobs`` generations are created
(80 % still pending, 20 % completed, the three result families in turn, as a poller fleet
sees them), then ``--procs`` load-generator processes with ``--connections`` keep-alive
connections each poll ``GET /v1/stt/{id}`` round-robin for ``--seconds``. The generator
writes pre-encoded requests on raw asyncio protocols so it costs far less CPU than the
server (aiohttp's client would need most of the machine's second core for the same rate).

Phase 2 (memory): creates (each followed by a poll of the finished job, so its answer is
built and cached) run at ``--churn-rate`` per second for ``--churn-seconds`` with a
retention of 5 s; the emulator's job count and RSS are sampled as it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import platform
import time
from typing import Any

import aiohttp

from bench._common import API_KEY, Emulator, command_line, machine_note, update_doc

MODELS = ("openai/gpt-4o-mini-transcribe", "#g1_nova-2-general", "aai/best")
TARGET_POLLS_PER_SECOND = 2000
CHURN_RETENTION = 5.0


# -- phase 1: the load generator (runs in child processes) ---------------------------------


class _Poller(asyncio.Protocol):
    """One keep-alive connection: send a GET, parse the answer, send the next."""

    def __init__(
        self, requests: list[bytes], offset: int, stop_at: float, out: dict[str, Any]
    ) -> None:
        self.requests, self.i, self.stop_at, self.out = requests, offset, stop_at, out
        self.buffer = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.requests[self.i % len(self.requests)])
        self.i += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            start = self.buffer.find(b"Content-Length: ", 0, head_end)
            length = int(self.buffer[start + 16 : self.buffer.find(b"\r\n", start)])
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(self.buffer[9:12])
            del self.buffer[:total]
            now = time.perf_counter()
            self.out["statuses"][status] = self.out["statuses"].get(status, 0) + 1
            if len(self.out["latencies"]) < 200_000:
                self.out["latencies"].append(now - self.sent)
            if now >= self.stop_at:
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _same(poller: _Poller) -> _Poller:
    return poller


async def _load(
    host: str, port: int, paths: list[str], connections: int, seconds: float
) -> dict[str, Any]:
    headers = f"Host: {host}:{port}\r\nAuthorization: Bearer {API_KEY}\r\n"
    requests = [f"GET {p} HTTP/1.1\r\n{headers}\r\n".encode() for p in paths]
    out: dict[str, Any] = {"statuses": {}, "latencies": []}
    loop = asyncio.get_running_loop()
    stop_at = time.perf_counter() + seconds
    pollers = []
    for c in range(connections):
        poller = _Poller(requests, c * 7919, stop_at, out)  # spread connections over the ids
        await loop.create_connection(functools.partial(_same, poller), host, port)
        pollers.append(poller)
    await asyncio.gather(*(p.done for p in pollers))
    return out


def _load_process(args: tuple[str, int, list[str], int, float]) -> dict[str, Any]:
    return asyncio.run(_load(*args))


# -- orchestration -------------------------------------------------------------------------


async def _create_jobs(base_url: str, count: int) -> list[str]:
    """Create ``count`` jobs: every fifth completes in 0.6 s, the rest stay pending."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def create(i: int) -> str:
            seconds = 30 if i % 5 == 0 else 3600  # --speed 0.02: 0.6 s vs 72 s of processing
            body = {
                "model": MODELS[i % 3],
                "url": f"https://bench.example/{i}/force-duration-{seconds}.mp3",
            }
            async with session.post(f"{base_url}/v1/stt/create", json=body) as response:
                return str((await response.json())["generation_id"])

        return list(await asyncio.gather(*(create(i) for i in range(count))))


def throughput(emu: Emulator, args: argparse.Namespace) -> dict[str, Any]:
    ids = asyncio.run(_create_jobs(emu.base_url, args.jobs))
    time.sleep(1.0)  # let the short jobs complete
    host, port = emu.base_url.removeprefix("http://").rsplit(":", 1)
    paths = [f"/v1/stt/{gid}" for gid in ids]
    rss_before, cpu_before = emu.rss_mb(), emu.cpu_seconds()
    started = time.perf_counter()
    work = [(host, int(port), paths, args.connections, args.seconds)] * args.procs
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        results = pool.map(_load_process, work)
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    for result in results:
        for status, n in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
        latencies.extend(result["latencies"])
    latencies.sort()
    ok = statuses.get(201, 0)
    return {
        "seconds": round(elapsed, 2),
        "jobs": len(ids),
        "load_processes": args.procs,
        "connections": args.procs * args.connections,
        "polls_ok": ok,
        "polls_other": sum(n for s, n in statuses.items() if s != 201),
        "polls_per_second": round(ok / elapsed),
        "latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 2),
        "latency_ms_p99": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        "emulator_cpu_share": round((emu.cpu_seconds() - cpu_before) / elapsed, 2),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(emu.rss_mb(), 1),
    }


async def _churn(emu: Emulator, rate: float, seconds: float) -> list[dict[str, float]]:
    """Create-then-poll at ``rate``/s; sample job count and RSS every second."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    samples: list[dict[str, float]] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        await (await session.post(f"{emu.base_url}/_emulator/reset")).read()  # drop phase 1
        config = {"retention": CHURN_RETENTION, "fixed": 0.0, "queue_delay": 0.0}
        await (await session.post(f"{emu.base_url}/_emulator/config", json=config)).read()

        async def one(i: int) -> None:
            body = {
                "model": MODELS[i % 3],
                "url": f"https://churn.example/{i}/force-duration-60.mp3",
            }
            async with session.post(f"{emu.base_url}/v1/stt/create", json=body) as response:
                gid = (await response.json())["generation_id"]
            async with session.get(f"{emu.base_url}/v1/stt/{gid}") as response:
                await response.read()

        async def sample(t: float) -> None:
            async with session.get(f"{emu.base_url}/_emulator/stats") as response:
                jobs = (await response.json())["jobs"]
            samples.append({"t": round(t, 1), "jobs": jobs, "rss_mb": round(emu.rss_mb(), 1)})

        started = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        next_sample = 0.0
        while (elapsed := time.perf_counter() - started) < seconds + CHURN_RETENTION + 2:
            if elapsed < seconds:
                while i < elapsed * rate:
                    task = asyncio.create_task(one(i))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    i += 1
            if elapsed >= next_sample:
                await sample(elapsed)
                next_sample += 1.0
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        await sample(time.perf_counter() - started)
    return samples


def memory(emu: Emulator, args: argparse.Namespace) -> dict[str, Any]:
    samples = asyncio.run(_churn(emu, args.churn_rate, args.churn_seconds))
    during = [s for s in samples if s["t"] <= args.churn_seconds]
    steady = [s for s in during if s["t"] >= CHURN_RETENTION + 2]
    return {
        "rate_per_second": args.churn_rate,
        "seconds": args.churn_seconds,
        "retention": CHURN_RETENTION,
        "creates": round(args.churn_rate * args.churn_seconds),
        "max_live_jobs": max(s["jobs"] for s in samples),
        "live_jobs_at_end": samples[-1]["jobs"],
        "rss_mb_steady_first": steady[0]["rss_mb"] if steady else None,
        "rss_mb_steady_last": steady[-1]["rss_mb"] if steady else None,
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "samples": samples,
    }


def render(report: dict[str, Any]) -> str:
    t, m = report["throughput"], report["memory"]
    verdict = "meets" if t["polls_per_second"] >= TARGET_POLLS_PER_SECOND else "MISSES"
    machine = f"{report['cpus']} CPUs, Python {report['python']}, aiohttp {report['aiohttp']}"
    rows = [
        ("machine", machine),
        ("polls 201 / other", f"{t['polls_ok']} / {t['polls_other']} in {t['seconds']} s"),
        ("polls per second", f"{t['polls_per_second']} ({verdict} {TARGET_POLLS_PER_SECOND}/s)"),
        ("load processes", str(t["load_processes"])),
        ("connections / jobs polled", f"{t['connections']} / {t['jobs']}"),
        ("latency p50 / p99", f"{t['latency_ms_p50']} / {t['latency_ms_p99']} ms"),
        ("emulator CPU", f"{t['emulator_cpu_share']:.0%} of one core"),
        ("RSS before / after polls", f"{t['rss_mb_before']} / {t['rss_mb_after']} MB"),
        ("churn creates (+1 poll each)", f"{m['creates']} at {m['rate_per_second']:g}/s"),
        ("churn retention", f"{m['retention']:g} s"),
        ("live jobs max / after expiry", f"{m['max_live_jobs']} / {m['live_jobs_at_end']}"),
        (
            "RSS steady first / last / max",
            f"{m['rss_mb_steady_first']} / {m['rss_mb_steady_last']} / {m['rss_mb_max']} MB",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["emulator capacity", "-" * (width + 40)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("churn samples (t s: live jobs, RSS MB):")
    step = max(1, len(m["samples"]) // 10)
    lines += [f"  {s['t']:5.1f}: {s['jobs']:6}, {s['rss_mb']}" for s in m["samples"][::step]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="poll load duration")
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--connections", type=int, default=64, help="connections per process")
    parser.add_argument("--jobs", type=int, default=1000, help="generations to poll")
    parser.add_argument("--churn-rate", type=float, default=400.0, help="creates per second")
    parser.add_argument("--churn-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    note = machine_note()
    emu = Emulator("--speed", "0.02", "--queue-delay", "0")
    try:
        report: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "throughput": throughput(emu, args),
            "memory": memory(emu, args),
        }
    finally:
        emu.stop()
    print(json.dumps(report, indent=2) if args.json else render(report))
    if not args.no_doc:
        update_doc("emulator", f"`{command_line()}`\n\n{note}.\n\n```\n{render(report)}\n```")
    return 0 if report["throughput"]["polls_per_second"] >= TARGET_POLLS_PER_SECOND else 1


if __name__ == "__main__":
    raise SystemExit(main())
