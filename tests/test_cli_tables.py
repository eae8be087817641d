"""The CLI's tables: outside text shown as typed (never Rich markup), readable at 80 columns."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from p2pdata.devcluster import wait_for
from p2pdata.display import Column, ago, human_size, parse_size, table

MARKUP = "[/] [link=https://evil.example/]click me[/link] [bold red]loud"


class _Answers503(BaseHTTPRequestHandler):
    """A peer that answers every request with a reason phrase that is Rich markup."""

    def do_GET(self) -> None:
        self.send_response(503, "[/] [link=https://evil.example/]x[/link]")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def markup_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_markup_from_descriptions_and_peer_errors_is_shown_as_typed(
    make_daemon: Any, tmp_path: Path, markup_peer: str
) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.bin").write_bytes(b"abc")
    daemon = make_daemon("victim")
    daemon.cli("publish", str(source), "--name", "marked", "--version", "1", "--description", MARKUP)
    out = daemon.cli("search", "marked")
    assert _column(out, "description").startswith("[/][link=https://evil.exam"), out

    daemon.cli("peers", "add", markup_peer)
    wait_for(lambda: any(p["error"] for p in daemon.cli_json("peers")), what="the peer's error")
    for command in ("peers", "status"):
        out = daemon.cli(command)
        assert "HTTP503[/][link=https://evil.example/]x[/link]" in _column(out, "error"), out


def _column(out: str, header: str) -> str:
    """The text of one table column, lines joined and whitespace dropped (cells may be folded)."""
    lines = out.splitlines()
    head = next(line for line in lines if f" {header} " in line)
    index = [cell.strip() for cell in head.split("┃")].index(header)
    cells = [line.split("│")[index] for line in lines if line.startswith("│")]
    return "".join("".join(cells).split())


def _render(rows: list[dict[str, Any]], columns: list[Column]) -> list[str]:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(table(rows, columns))
    return console.export_text().splitlines()


def test_a_reference_is_folded_never_cut_at_80_columns() -> None:
    ref = "abcdefghijklmnop/a-rather-long-dataset-name-for-taxis@2024.03.01-final"
    rows = [{"ref": ref, "description": "words " * 40, "size": 123456789, "state": None}]
    lines = _render(rows, [Column("ref", whole=True), Column("description"),
                           Column("size", show=human_size), Column("state")])
    assert all(len(line) <= 80 for line in lines)
    text = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert ref in text
    assert "117.7 MiB" in "\n".join(lines) and "None" not in "\n".join(lines)


def test_sizes_and_times_for_people() -> None:
    assert human_size(0) == "0 B" and human_size(1536) == "1.5 KiB" and human_size(None) == ""
    assert parse_size("10MiB") == 10 * 1024**2 == parse_size("10 M")
    assert parse_size("2GB") == 2_000_000_000 and parse_size("4096") == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_size("ten")
    assert ago(94.0, now=100.0) == "6 s ago"
    assert ago(100.0 - 600, now=100.0) == "10 min ago"
    assert ago(100.0 - 3 * 86400, now=100.0) == "3 d ago"
    assert ago(None) == "never"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_and_option_has_help_and_dash_h() -> None:
    from p2pdata.catalog import FORMATS
    from p2pdata.cli import FORMATS as CLI_FORMATS
    from p2pdata.cli import main

    assert CLI_FORMATS == FORMATS
    for path, command in _commands(main):
        assert command.help, f"p2pdata {' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"p2pdata {' '.join(path)} {param.opts[0]} has no help text"
        result = CliRunner().invoke(main, [*path, "-h"])
        assert result.exit_code == 0 and "Usage:" in result.output, (path, result.output)


def test_size_and_format_options_are_checked(tmp_path: Path) -> None:
    from p2pdata.cli import main

    result = CliRunner().invoke(main, ["--home", str(tmp_path), "search", "--format", "parquett"])
    assert result.exit_code == 2 and "'parquett' is not one of" in result.output
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "search", "--min-size", "ten"])
    assert result.exit_code == 2 and "not a size" in result.output
    for command in (["fetch", "x@1"], ["jobs", "watch", "abc"]):
        result = CliRunner().invoke(main, ["--home", str(tmp_path), *command, "--timeout", "-5"])
        assert result.exit_code == 2 and "--timeout" in result.output and "-5" in result.output


def test_search_size_options_take_units(make_daemon: Any, tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.bin").write_bytes(b"x" * 3000)
    daemon = make_daemon("solo")
    daemon.cli("publish", str(source), "--name", "small", "--version", "1")
    assert [r["name"] for r in daemon.cli_json("search", "--min-size", "2KiB")] == ["small"]
    assert daemon.cli_json("search", "--min-size", "3.5KB", "--max-size", "1MiB") == []


def test_shell_completion_offers_dataset_names_from_the_local_index(make_daemon: Any, tmp_path: Path) -> None:
    from p2pdata.cli import main

    source = tmp_path / "data"
    source.mkdir()
    (source / "a.bin").write_bytes(b"x")
    daemon = make_daemon("solo")
    for name, version in (("taxi-trips", "2024.02"), ("taxi-trips", "2024.03"), ("weather", "1")):
        daemon.cli("publish", str(source), "--name", name, "--version", version)

    def complete(words: str) -> list[str]:
        env = {"_P2PDATA_COMPLETE": "bash_complete", "COMP_WORDS": f"p2pdata --home {daemon.home} {words}",
               "COMP_CWORD": str(len(words.split()) + 2)}
        result = CliRunner().invoke(main, [], env=env, prog_name="p2pdata")
        return [line.partition(",")[2] for line in result.output.split()]  # bash: "plain,VALUE"

    assert complete("info ta") == ["taxi-trips"]
    assert complete("fetch taxi-trips@") == ["taxi-trips@2024.02", "taxi-trips@2024.03"]


def test_transfer_bars_use_the_units_of_every_table_and_show_refs_as_typed() -> None:
    from rich.progress import Progress

    from p2pdata.display import transfer_columns

    console = Console(width=120, record=True, file=io.StringIO())
    with Progress(*transfer_columns(), console=console, auto_refresh=False) as progress:
        task = progress.add_task("lab/x@1 [landing] [/]", total=10 * 1024**2)
        progress.update(task, completed=5 * 1024**2)
        progress.refresh()
    text = console.export_text()
    assert "lab/x@1 [landing] [/]" in text
    assert "5.0/10.0 MiB" in text and " MB" not in text


def test_terminal_control_characters_from_peers_are_shown_as_escapes() -> None:
    """Rich passes ESC through: a peer's name or error must not retitle or clear the terminal."""
    from p2pdata.display import plain, printable

    hostile = "lab\x1b]0;owned\x07\x1b[2J\x9b31m\u202eexe.txt\rfake"
    assert printable(hostile) == "lab\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eexe.txt\\rfake"
    assert printable("tab\there\nnext é 日本") == "tab\there\nnext é 日本"
    out = io.StringIO()
    console = Console(width=80, file=out, force_terminal=True)
    console.print(table([{"error": hostile}], [Column("error", wraps=True)]))
    plain(console, hostile)
    assert not any(c in out.getvalue() for c in "\x07\x9b\u202e\r")
    assert "\x1b]" not in out.getvalue() and "\x1b[2J" not in out.getvalue()
