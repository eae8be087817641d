"""How the CLI shows values to a person: sizes, times, publishers and tables at 80 columns.

Every value may come from outside (a peer's description, an error a peer answered with),
so cells are `rich.text.Text`, never markup: `[/]` or `[link=…]` in a value is shown as
typed, not interpreted, and terminal control characters (Rich passes ESC through) are shown as
escapes (`printable`). `--json` output bypasses all of this and keeps the raw values.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from p2pdata.fetch_states import FINAL_STATES

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
REREAD = 2.0  # seconds without an event after which a follower re-reads its job
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)\s*", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "b": 1}
for _power, _unit in enumerate(UNITS[1:], start=1):
    _MULTIPLIERS[_unit[0].lower()] = 1024**_power  # 10M means 10 MiB, as in `du -h`
    _MULTIPLIERS[_unit.lower()] = 1024**_power
    _MULTIPLIERS[f"{_unit[0]}b".lower()] = 1000**_power


# C0/C1 controls but tab and newline (ESC starts every terminal sequence; CR rewrites a line)
# and the bidi controls that make a name read as another.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every control character shown as its escape (`\\x1b`), for a terminal."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def human_size(n: int | float | None) -> str:
    """1536 → '1.5 KiB'. Every size the CLI shows uses these binary units."""
    if n is None:
        return ""
    value = float(n)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """'10MiB', '10 MB', '1.5G', '4096' → bytes (KiB/MiB/… and K/M/… are binary, KB/MB/… decimal)."""
    match = _SIZE.fullmatch(text)
    if not match or match.group(2).lower() not in _MULTIPLIERS:
        raise ValueError(f"{text!r} is not a size (examples: 4096, 512KiB, 10MiB, 1.5GiB, 2GB)")
    return int(float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()])


def ago(when: float | None, now: float | None = None) -> str:
    """An epoch time as '6 s ago', '3 min ago', '2 h ago', '4 d ago' ('never' for None)."""
    if when is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - when)
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds / 86400:.0f} d ago"


def publisher(cluster_id: str | None, names: Mapping[str, str]) -> str:
    """'lab-a (abcd2345…)': the human name beside a shortened id, or the whole id when unnamed."""
    if not cluster_id:
        return ""
    name = names.get(cluster_id)
    return f"{name} ({cluster_id[:8]}…)" if name and name != cluster_id else cluster_id


def named_ref(ref: str, names: Mapping[str, str]) -> str:
    """`CLUSTER/NAME@V` with the publisher's name in place of its id, when it has one."""
    cluster, slash, rest = ref.rpartition("/")
    return f"{names.get(cluster, cluster)}/{rest}" if slash else ref


@dataclass(frozen=True)
class Column:
    """One table column: `key` of the row, how to show its value, and whether it may be cut.

    A `whole` column (a reference the user must copy) and a `wraps` column (an error
    message) are folded onto several lines when they do not fit, never cut with an ellipsis;
    other columns are cut at `max_width` (a description is only a preview: `info` shows it whole).
    """

    key: str
    header: str = ""
    show: Callable[[Any], str] | None = None
    whole: bool = False
    wraps: bool = False
    max_width: int = 28


def cell(value: Any) -> str:
    """A value as a person reads it: nothing for None, lists joined."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    return str(value)


def table(rows: Iterable[Mapping[str, Any]], columns: list[Column], title: str | None = None) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        # No min_width: Rich crops the whole table when the minimums exceed the width.
        folds = column.whole or column.wraps
        result.add_column(column.header or column.key, overflow="fold" if folds else "ellipsis",
                          no_wrap=not folds, max_width=None if folds else column.max_width)
    for row in rows:
        result.add_row(*(Text(printable((column.show or cell)(row.get(column.key))))
                         for column in columns))
    return result


def print_table(
    console: Console, rows: Iterable[Mapping[str, Any]], columns: list[Column], title: str | None = None
) -> None:
    rows = list(rows)
    if rows:
        console.print(table(rows, columns, title))
    else:  # an empty frame says less than one line
        plain(console, f"{title}: none" if title else "none")


def plain(console: Console, text: str) -> None:
    """Print a line that may hold outside text, without interpreting markup or highlighting."""
    # soft_wrap: the terminal wraps a long line, so a command in it copies whole.
    console.print(Text(printable(text)), highlight=False, soft_wrap=True)


class SpeedColumn(ProgressColumn):
    """Transfer speed in the binary units every other size uses (Rich's own says MB/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{human_size(speed)}/s", style="progress.data.speed")


def transfer_columns() -> tuple[ProgressColumn, ...]:
    """The columns of every transfer progress bar: description (never markup), bar, sizes, speed."""
    return (
        TextColumn("{task.description}", markup=False),  # refs and states may come from peers
        BarColumn(),
        DownloadColumn(binary_units=True),
        SpeedColumn(),
        TimeRemainingColumn(),
    )


class Jobs(Protocol):
    """The control API, as a fetch follower uses it (web.client.ControlClient)."""

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None,
                   **query: Any) -> Any: ...
    def events(self) -> AsyncIterator[dict[str, Any]]: ...


async def follow_fetch(client: Jobs, job: dict[str, Any], *, console: Console | None = None,
                       quiet: bool = False) -> dict[str, Any]:
    """Show fetch job `job` with a progress bar until it ends; the job as it ended.

    Progress comes from the daemon's event stream; a state change, or a quiet spell of REREAD
    seconds (the end may have come before the stream was open), re-reads the job. Once the
    stream ends or breaks (the daemon stopping), the job is re-read at once and then every
    REREAD seconds: a read that fails says what failed."""

    def describe(peers: int | None = None) -> str:
        what = f"{job['ref']} [{job['state']}]" if peers is None else f"{job['ref']} ({peers} peers)"
        return printable(f"{what}: {job['waiting']}" if job.get("waiting") else what)

    with Progress(*transfer_columns(), console=console, disable=quiet) as progress:
        task = progress.add_task(job["ref"], total=job.get("total_bytes") or None)
        events = client.events()
        streaming = True
        pending: asyncio.Future[dict[str, Any]] | None = None
        try:
            job = await client.call("GET", f"/v1/jobs/{job['id']}")
            progress.update(task, completed=job["done_bytes"], description=describe())
            while job["state"] not in FINAL_STATES:
                if streaming:
                    pending = pending or asyncio.ensure_future(anext(events))
                    done, _ = await asyncio.wait({pending}, timeout=REREAD)
                    if done and pending.exception() is not None:  # the stream ended or broke
                        streaming, pending, done = False, None, set()
                else:
                    await asyncio.sleep(REREAD)
                    done = set()
                if not done:  # quiet for a while: re-read, in case the end came before we listened
                    job = await client.call("GET", f"/v1/jobs/{job['id']}")
                    progress.update(task, completed=job["done_bytes"], description=describe())
                    continue
                assert pending is not None
                event, pending = pending.result(), None
                if event.get("job") != job["id"]:
                    continue
                if event["type"] == "fetch.progress":
                    job["waiting"] = event.get("waiting")
                    progress.update(task, completed=event["done_bytes"], total=event["total_bytes"],
                                    description=describe(event.get("peers", 0)))
                elif event["type"] == "fetch.state":
                    job = await client.call("GET", f"/v1/jobs/{job['id']}")
                    progress.update(task, completed=job["done_bytes"], description=describe())
        finally:  # on a timeout or Ctrl-C too: the event stream's connection is closed, not leaked
            if pending is not None:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            await events.aclose()  # type: ignore[attr-defined]
    return job
