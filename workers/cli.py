"""``stt-workers``: run workers, submit jobs and read results from the command line.

A failure a newcomer meets (broker or database unreachable, a malformed setting, a missing
file) is one line naming the setting or file and what to check, exit code 1; ``--debug``
or ``STT_LOG_LEVEL=DEBUG`` shows the traceback instead (``main`` below).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tasks.errors import InvalidInput
from tasks.models import JobStatus
from tasks.redact import neutralize
from workers import render

if TYPE_CHECKING:
    from tasks.pricing import PricedModel
    from tasks.store import JobRecord, Store

__all__ = ["main"]

# Set by --debug: failures then propagate with their traceback.
_debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Transcribe audio through the AI/ML API with Celery workers."""
    global _debug
    _debug = debug


@cli.command()
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=16,
    show_default=True,
    envvar="STT_WORKER_CONCURRENCY",
    show_envvar=True,
)
@click.option(
    "--pool",
    "-P",
    type=click.Choice(["threads", "prefork", "solo", "gevent", "eventlet"]),
    default="threads",
    show_default=True,
    envvar="STT_WORKER_POOL",
    show_envvar=True,
    help="threads suits this I/O-bound work; see docs/operations.md.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    envvar="STT_WORKER_PROCESSES",
    show_envvar=True,
    help="Worker processes on this node [default: one per core]; see docs/operations.md.",
)
@click.option(
    "--loglevel", "-l", default="INFO", show_default=True, envvar="STT_LOG_LEVEL", show_envvar=True
)
@click.option("--hostname", "-n", default=None, help="Node name (default: celery's).")
def worker(
    concurrency: int, pool: str, processes: int | None, loglevel: str, hostname: str | None
) -> None:
    """Run a worker that consumes the stt queue (one process per core by default; it needs
    AIML_API_KEY)."""
    from tasks.settings import get_settings
    from workers.supervise import default_processes, run_processes

    # Without a key every submit would fail in the log while jobs sit pending: refuse to
    # start instead. (The demo's worker gets the embedded emulator's key.)
    get_settings().require_api_key()

    _require_current_schema()
    _require_usable_broker()
    _price_table()  # a worker that cannot price jobs stops here, not at its first store
    count = processes or default_processes()
    if count > 1:
        options = [f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"]
        sys.exit(run_processes(count, options, hostname))

    from workers.celery_app import app

    argv = ["worker", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"]
    argv += ["--queues=stt", "--without-gossip", "--without-mingle"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def _require_usable_broker() -> None:
    """Refuse a classic stt queue on RabbitMQ once, in one line, before starting any process
    (each worker process checks again at start: ``workers.celery_app``)."""
    from tasks.broker import BrokerMisconfigured
    from workers.celery_app import app, check_broker

    try:
        check_broker(app)
    except BrokerMisconfigured as exc:
        raise click.ClickException(str(exc)) from None


def _require_current_schema() -> None:
    """Stop before consuming anything if the schema is behind this code (one line, exit 1).

    A database that cannot be reached now is not a verdict: the worker starts, and its
    store checks again when it first opens (tasks run their own database retries).
    """
    from sqlalchemy.exc import DBAPIError

    from tasks.errors import SchemaOutOfDate
    from tasks.migrate import ensure_current
    from tasks.settings import get_settings

    try:
        ensure_current(get_settings().database_url)
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:
        click.echo(f"warning: could not check the database schema: {exc.orig or exc}", err=True)


@cli.command()
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (for a DBA).")
def migrate(sql: bool) -> None:
    """Upgrade the database schema to this release's; run it before rolling out workers.

    Safe to run from several hosts at once (PostgreSQL: an advisory lock) and again when
    nothing is left to do. A database v0.1.0 made is recognised and upgraded in place.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from tasks import migrate as migrations
    from tasks.errors import SchemaMismatch
    from tasks.settings import get_settings

    url = get_settings().database_url
    where = make_url(url).render_as_string(hide_password=True)
    if sql:
        click.echo(migrations.upgrade_sql(url), nl=False)
        return
    try:
        done = migrations.upgrade(url)
    except SchemaMismatch as exc:
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:
        reason = str(exc.orig or exc).splitlines()[0]
        raise click.ClickException(f"cannot migrate {where}: {reason}") from None
    if done.changed:
        click.echo(f"{where}: schema upgraded from {done.before or 'none'} to {done.after}")
    else:
        click.echo(f"{where}: schema already at {done.after}")


@cli.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option(
    "--schedule",
    "-s",
    default=None,
    help="Beat's state file (default: celerybeat-schedule in the working directory).",
)
def beat(loglevel: str, schedule: str | None) -> None:
    """Run the periodic scheduler (stt.sweep every 60 s); one per deployment."""
    from workers.celery_app import app

    argv = ["beat", f"--loglevel={loglevel}"]
    if schedule:
        argv.append(f"--schedule={schedule}")
    app.start(argv)


FLOWER_AUTH_VARIABLE = "FLOWER_BASIC_AUTH"


def _check_basic_auth(raw: str | None) -> None:
    """Flower without auth shows every task of the deployment: refuse to start it.

    Flower reads ``FLOWER_BASIC_AUTH`` itself (``user:password[,user2:password2]``); the
    value is kept out of the command line so it does not show in ``ps`` or logs.
    """
    pairs = [p for p in (raw or "").split(",") if p]
    if not pairs or any(not u or not pw for u, _, pw in (p.partition(":") for p in pairs)):
        raise click.UsageError(
            f"{FLOWER_AUTH_VARIABLE} must be set to user:password (comma-separated for "
            "several); Flower is never started without authentication"
        )


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--port", type=int, default=5555, show_default=True, envvar="FLOWER_PORT")
@click.option("--address", default="127.0.0.1", show_default=True, envvar="FLOWER_ADDRESS")
@click.option(
    "--db",
    default=None,
    help="Keep Flower's task history in this file across restarts (--persistent).",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def flower(port: int, address: str, db: str | None, args: tuple[str, ...]) -> None:
    """Run Flower (monitoring UI, HTTP API, Prometheus /metrics) with basic auth.

    Needs FLOWER_BASIC_AUTH=user:password in the environment. Extra arguments go to Flower.
    """
    import os

    from workers.celery_app import app

    _check_basic_auth(os.environ.get(FLOWER_AUTH_VARIABLE))
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if db:
        argv += ["--persistent=True", f"--db={db}"]
    app.start([*argv, *args])


def _read_urls(urls: Sequence[str], from_file: str | None) -> list[str]:
    collected = list(urls)
    if from_file:
        try:
            with click.open_file(from_file) as handle:
                collected += [
                    line.strip() for line in handle if line.strip() and not line.startswith("#")
                ]
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise click.ClickException(
                f"cannot read --from-file {from_file}: {reason}; check the path"
            ) from None
        except UnicodeDecodeError:
            raise click.ClickException(
                f"cannot read --from-file {from_file}: not UTF-8 text; give one URL per line"
            ) from None
    if not collected:
        raise click.UsageError("give at least one URL, or --from-file")
    return collected


@cli.command()
@click.argument("urls", nargs=-1)
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--model", default="openai/gpt-4o-mini-transcribe", show_default=True)
@click.option("--language", default=None)
@click.option("--prompt", default=None)
@click.option("--temperature", default=None, help="A number in [0, 1].")
@click.option(
    "--callback-url",
    default=None,
    help="POST each job's result here when it ends, signed with STT_CALLBACK_SECRET.",
)
@click.option(
    "--duration",
    default=None,
    help="The audio's length in seconds, if known: polls aim at the predicted finish.",
)
@click.option("--wait", is_flag=True, help="Wait until every job is final.")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def submit(
    urls: tuple[str, ...],
    from_file: str | None,
    model: str,
    language: str | None,
    prompt: str | None,
    temperature: str | None,
    callback_url: str | None,
    duration: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Enqueue a transcription job for each URL."""
    from tasks.jobs import transcribe
    from tasks.settings import get_settings
    from tasks.validation import validate_request

    all_urls = _read_urls(urls, from_file)
    allow = get_settings().callback_allow_networks
    temp = _parse_number(temperature, "temperature", "a number in [0, 1]")
    seconds = _parse_number(duration, "duration", "a number of seconds")
    if seconds is not None and len(all_urls) > 1:
        raise click.BadParameter(
            "gives one audio's length: use it with one URL", param_hint="'--duration'"
        )
    # Validate every URL before enqueueing any, so a bad line enqueues nothing at all.
    for index, url in enumerate(all_urls):
        try:
            validate_request(
                url,
                model,
                language=language,
                prompt=prompt,
                temperature=temp,
                callback_url=callback_url,
                callback_allow=allow,
                duration=seconds,
            )
        except InvalidInput as exc:
            where = f" (URL #{index + 1})" if len(all_urls) > 1 else ""
            raise click.BadParameter(f"{exc.detail}{where}", param_hint=f"'{exc.field}'") from None
    if callback_url is not None:
        _require_callback_secret()
    enqueued: list[str] = []
    try:
        for url in all_urls:
            handle = transcribe(
                url,
                model,
                language=language,
                prompt=prompt,
                temperature=temp,
                callback_url=callback_url,
                duration=seconds,
            )
            enqueued.append(handle.id)
        if not (wait or from_file):
            for job_id, url in zip(enqueued, all_urls, strict=True):
                click.echo(json.dumps({"id": job_id, "url": url}) if as_json else job_id)
            return
        records = render.wait_with_progress(enqueued, timeout=timeout)
    except KeyboardInterrupt:
        # The jobs run on without us: say which, so they can be followed up.
        click.echo(
            f"\ninterrupted: {len(enqueued)} of {len(all_urls)} jobs were enqueued and run on "
            "(stt-workers status ID):",
            err=True,
        )
        for job_id in enqueued:
            click.echo(job_id)
        sys.exit(130)
    for record in records:
        click.echo(json.dumps(render.record_json(record)) if as_json else render.summary(record))
    pending = [r for r in records if not r.done]
    if pending:
        click.echo(
            f"timed out after {timeout:g} s: {len(pending)} of {len(records)} jobs not finished "
            f"(still {pending[0].status.value}); is a worker running on queue stt?",
            err=True,
        )
    if any(r.status is not JobStatus.COMPLETED for r in records):
        sys.exit(1)


def _require_callback_secret() -> None:
    from tasks.errors import ConfigurationError
    from tasks.settings import get_settings

    try:
        get_settings().require_callback_secret()
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


def _parse_number(raw: str | None, field: str, expected: str) -> float | None:
    """``raw`` as a float, or a usage error naming ``field`` (range checks are
    ``tasks.validation``'s, shared with ``transcribe()``)."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise click.BadParameter(
            f"must be {expected}, got {raw[:40]!r}", param_hint=f"'{field}'"
        ) from None


def _read_store() -> Store:
    """The store, for a command that only reads it: never creates a database.

    Opening a missing SQLite file would create an empty one (with the schema), and a
    mistyped STT_DATABASE_URL would then answer "no jobs" instead of pointing at itself.
    """
    from tasks.runtime import get_store
    from tasks.settings import get_settings
    from tasks.store import sqlite_file

    path = sqlite_file(get_settings().database_url)
    if path is not None and not path.exists():
        raise click.ClickException(f"no store at {path} (set STT_DATABASE_URL)")
    return get_store()


def _load(job_id: str) -> JobRecord:
    record = _read_store().get(job_id)
    if record is None:
        raise click.ClickException(f"no job {job_id!r}")
    return record


@cli.command()
@click.argument("job_id")
def status(job_id: str) -> None:
    """Show one job's status and timings."""
    click.echo(render.details(_load(job_id)))


@cli.command()
@click.argument("job_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "srt", "vtt"]), default="text")
def result(job_id: str, fmt: str) -> None:
    """Print a job's transcript as text, JSON or subtitles."""
    try:
        click.echo(render.result(_load(job_id), fmt))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command(name="list")
@click.option("--status", "status_", type=click.Choice([s.value for s in JobStatus]))
@click.option("--limit", type=int, default=50, show_default=True)
def list_(status_: str | None, limit: int) -> None:
    """List the newest jobs."""
    records = _read_store().list_jobs(status=JobStatus(status_) if status_ else None, limit=limit)
    click.echo(render.table(records))


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,  # -h/--help go to the emulator's own parser, which lists its options
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def emulator(args: tuple[str, ...]) -> None:
    """Run the AI/ML STT API emulator (its options: stt-workers emulator --help)."""
    from workers.emulator.cli import main as emulator_main

    sys.exit(emulator_main(list(args), prog="stt-workers emulator"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """Known models: result family, estimated price, and where each price came from.

    Prices are the catalog's unless STT_PRICES_FILE (TOML or JSON) overrides or adds them.
    """
    from workers import report_render

    table = sorted(_price_table().values(), key=lambda m: m.id)
    if as_json:
        click.echo(json.dumps(report_render.models_json(table), indent=2))
    else:
        click.echo(report_render.models_text(table))


def _price_table() -> dict[str, PricedModel]:
    """This process's prices; a bad STT_PRICES_FILE is one line and exit 1."""
    from tasks.errors import ConfigurationError
    from tasks.pricing import price_table

    try:
        return price_table()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--jobs", "n_jobs", type=int, default=9, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the demo folder (database, logs).")
@click.option(
    "--job-seconds",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Emulated processing time of every job (default: 0.3 x the audio's length).",
)
@click.option(
    "--broker",
    type=click.Choice(["filesystem", "sqlite"]),
    default="filesystem",
    hidden=True,  # the measured alternative (bench/demo_runs.py), not a user choice
)
def demo(n_jobs: int, keep: bool, job_seconds: float | None, broker: str) -> None:
    """Run the whole pipeline locally: emulator, worker, embedded broker, SQLite."""
    from workers.demo import run_demo

    sys.exit(run_demo(n_jobs=n_jobs, keep=keep, job_seconds=job_seconds, broker=broker))


# -- reports: stats and usage from the store ---------------------------------------------------


def _time_bound(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``/``--until``: a duration back from now (30m, 1h, 7d) or an ISO date/time."""
    from tasks.reports import parse_time_bound
    from tasks.store import utcnow

    if value is None:
        return None
    try:
        return parse_time_bound(value, now=utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


_TIME_HELP = "A duration back from now (30m, 1h, 7d) or an ISO date/time (UTC unless it says)."


@cli.command()
@click.option(
    "--since", metavar="TIME", callback=_time_bound, help=f"Only jobs since then. {_TIME_HELP}"
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(since: datetime | None, as_json: bool) -> None:
    """Counts by status, latency percentiles, polls per job and last-hour throughput."""
    from tasks.reports import job_stats
    from workers import report_render

    report = job_stats(_read_store(), since=since)
    if as_json:
        click.echo(json.dumps(report_render.stats_json(report), indent=2))
    else:
        click.echo(report_render.stats_text(report))


@cli.command()
@click.option(
    "--since", metavar="TIME", callback=_time_bound, help=f"Jobs stored at or after. {_TIME_HELP}"
)
@click.option(
    "--until", metavar="TIME", callback=_time_bound, help=f"Jobs stored before. {_TIME_HELP}"
)
@click.option("--by", type=click.Choice(["model", "day"]), default="model", show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (one row per group, then total).")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a bar chart (cost and audio minutes per group), e.g. usage.png.",
)
def usage(
    since: datetime | None, until: datetime | None, by: str, as_csv: bool, plot: Path | None
) -> None:
    """Audio minutes, tokens and estimated cost of finished jobs, per model or per UTC day."""
    from tasks.reports import GroupBy, usage_report
    from workers import report_render

    if since is not None and until is not None and since >= until:
        raise click.BadParameter(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})",
            param_hint="'--since'",
        )
    if plot is not None:
        report_render.require_plotting()
    report = usage_report(_read_store(), by=GroupBy(by), since=since, until=until)
    click.echo(
        report_render.usage_csv(report) if as_csv else report_render.usage_text(report),
        nl=not as_csv,
    )
    if plot is not None:
        report_render.usage_plot(report, plot)
        click.echo(f"wrote {plot}", err=True)


# -- retention -------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--older-than",
    "cutoff",
    metavar="AGE",
    required=True,
    callback=_time_bound,
    help="Prune finished jobs stored longer ago than this: 30d, 12h, 2w, or an ISO date/time.",
)
@click.option(
    "--keep-text",
    is_flag=True,
    help="Keep the jobs with their text, usage and cost; empty only raw_result, words "
    "and segments (their subtitles become one cue for the whole audio).",
)
@click.option("--dry-run", is_flag=True, help="Only count the jobs that would be pruned.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Rows per transaction (default 1000; 100 on SQLite, whose one write lock a batch holds).",
)
def prune(cutoff: datetime, keep_text: bool, dry_run: bool, batch_size: int | None) -> None:
    """Delete finished jobs older than --older-than, in short batches (see docs/operations.md).

    Only finished jobs (completed, error, failed, timeout, and their callback delivered or
    given up) are touched; jobs in flight never are. Safe while workers run.
    """
    import time

    from tasks import retention
    from tasks.store import utcnow

    if cutoff >= utcnow():
        raise click.BadParameter("must be in the past", param_hint="'--older-than'")
    store = _read_store()  # nothing to prune in a database that does not exist
    started = time.monotonic()
    report = retention.prune(
        store, cutoff=cutoff, keep_text=keep_text, dry_run=dry_run, batch_size=batch_size
    )
    before = cutoff.isoformat(timespec="seconds")
    if report.dry_run:
        click.echo(
            f"dry run: {report.rows} finished jobs stored before {before} would be "
            f"{report.verb}; nothing was changed"
        )
        return
    click.echo(
        f"{report.verb} {report.rows} finished jobs stored before {before} "
        f"({report.batches} batches, {time.monotonic() - started:.1f} s)"
    )


def _one_line(exc: BaseException) -> str | None:
    """What a failure means for whoever ran the command, in one line; None for a bug (its
    traceback is the useful thing then)."""
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from tasks.errors import STTError
    from tasks.settings import get_settings

    def first_line(error: BaseException) -> str:
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        return (lines[0] if lines else type(error).__name__)[:200]

    if isinstance(exc, STTError):  # EnqueueError, ConfigurationError, SchemaOutOfDate ...
        return str(exc)
    if isinstance(exc, DBAPIError):
        where = make_url(get_settings().database_url).render_as_string(hide_password=True)
        return (
            f"database {where} unreachable ({first_line(exc)}); check STT_DATABASE_URL "
            "and that the database is up"
        )
    if isinstance(exc, BrokerError | RedisConnectionError):
        from tasks.redact import redact_url

        return (
            f"broker {redact_url(get_settings().broker_url)} unreachable ({first_line(exc)}); "
            "check STT_BROKER_URL and that the broker is up"
        )
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    from tasks.settings import debug_requested

    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="stt-workers")
    except InvalidInput as exc:  # pragma: no cover - commands convert these themselves
        click.echo(f"Error: {neutralize(str(exc))}", err=True)
        sys.exit(2)
    except Exception as exc:
        message = None if _debug or debug_requested() else _one_line(exc)
        if message is None:
            raise
        click.echo(f"Error: {neutralize(message)} (--debug shows the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
