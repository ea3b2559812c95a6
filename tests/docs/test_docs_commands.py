"""The documentation's commands, make targets and links still work.

Convention for commands in ``README.md`` and ``docs/**/*.md``:

* a fenced block tagged ``console`` is a terminal session: commands are the
  lines starting with ``$ ``, every other line is their output;
* a block tagged ``sh``, ``bash`` or ``shell`` is a script: every line that is
  not blank or a ``#`` comment is a command;
* a command ending in ``\\`` continues on the next line.

Every ``clickrouter`` command found that way (also as ``.venv/bin/clickrouter``,
behind ``VAR=value`` assignments, in a pipeline or after ``&&``) must parse with
the real argument parser: its sub-command and every option exist and every
value has the right type. ``CURATED`` commands are also run, in order, in a
temporary directory. A ``make`` target named in the docs must exist in the
Makefile, and every relative link (and its ``#anchor``) must resolve to a file
of the repository.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickrouter.cli import build_parser, main
from clickrouter.events import decode_event

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
SCRIPT_TAGS = {"sh", "bash", "shell"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SEPARATORS = {"|", "||", "&", "&&", ";", "(", ")", ";;"}
REDIRECTS = {">", ">>", "<", ">&", "<<", "<<<"}
WRAPPERS = {"time", "nohup", "exec", "sudo", "env"}
# run in this order in one temporary directory: a small world, a cold store, a score
CURATED = [
    "clickrouter --help",
    "clickrouter config",
    "clickrouter config --format json",
    "clickrouter simulate --campaigns 50 --seed 0 --out world --clicks 2000",
    "clickrouter train --store store --catalog world/campaigns.json --cold-start",
    "clickrouter models list --store store",
    "clickrouter score --models store --requests requests.jsonl --top 3",
]


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path) -> Iterator[tuple[str, str]]:
    """(tag, body) of every fenced code block of ``page``."""
    for match in FENCE.finditer(page.read_text(encoding="utf-8")):
        yield match.group(1).lower(), match.group(2)


def joined(lines: list[str]) -> Iterator[str]:
    """Lines with their ``\\`` continuations joined."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def commands(page: Path) -> Iterator[tuple[str, str]]:
    """(command, its documented output) of ``page``'s console and script blocks."""
    for tag, body in blocks(page):
        if tag == "console":
            command: list[str] = []
            output: list[str] = []
            for line in body.splitlines():
                if line.startswith("$ "):
                    if command:
                        yield " ".join(joined(command)), "\n".join(output)
                    command, output = [line[2:]], []
                elif command and not output and command[-1].rstrip().endswith("\\"):
                    command.append(line)
                else:
                    output.append(line)
            if command:
                yield " ".join(joined(command)), "\n".join(output)
        elif tag in SCRIPT_TAGS:
            for line in joined(body.splitlines()):
                if line.strip() and not line.lstrip().startswith("#"):
                    yield line, ""


def simple_commands(line: str) -> Iterator[list[str]]:
    """The simple commands of one shell line, without redirections or assignments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    current: list[str] = []
    skip = False
    for token in lexer:
        if skip:
            skip = False
        elif token in SEPARATORS:
            if current:
                yield current
            current = []
        elif token in REDIRECTS:
            skip = True  # the redirection's target is not an argument
        elif not current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            continue  # VAR=value before the program
        elif not current and token in WRAPPERS:
            continue
        else:
            current.append(token)
    if current:
        yield current


def clickrouter_argv(words: list[str]) -> list[str] | None:
    if words and Path(words[0]).name == "clickrouter":
        return words[1:]
    return None


def all_clickrouter_commands() -> list[tuple[str, list[str], str]]:
    found = []
    for page in PAGES:
        for line, output in commands(page):
            for words in simple_commands(line):
                argv = clickrouter_argv(words)
                if argv is not None:
                    found.append((f"{rel(page)}: {' '.join(words)}", argv, output))
    return found


DOC_COMMANDS = all_clickrouter_commands()


def test_the_docs_have_commands() -> None:
    assert len(DOC_COMMANDS) >= 30, "the command extraction found almost nothing"
    pages = {where.split(":")[0] for where, _, _ in DOC_COMMANDS}
    assert {"README.md", "docs/tutorial.md"} <= pages


def squeezed(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("where", "argv", "output"), DOC_COMMANDS, ids=[w for w, _, _ in DOC_COMMANDS]
)
def test_a_documented_command_parses(where: str, argv: list[str], output: str) -> None:
    """The sub-command, every option and every typed value exist as written.

    A console example whose output shows an ``error:`` line documents a refusal:
    if the parser refuses the command, it must say what the example shows.
    """
    parser = build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if {"-h", "--help", "--version"} & set(argv) and exc.code == 0:
                return
            shown = [line for line in output.splitlines() if "error:" in line]
            assert shown, f"{where}\n{err.getvalue()}"
            for line in shown:
                assert squeezed(line) in squeezed(err.getvalue()), f"{where}: {line}"


def test_the_curated_commands_are_in_the_docs() -> None:
    documented = {" ".join(words) for page in PAGES for line, _ in commands(page)
                  for words in simple_commands(line)}  # fmt: skip
    missing = [command for command in CURATED if command not in documented]
    assert not missing, f"curated commands no longer in the docs: {missing}"


def test_the_curated_commands_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    for name in list(os.environ):
        if name.startswith("CLICKROUTER_"):
            monkeypatch.delenv(name)
    (tmp_path / "requests.jsonl").write_text(
        '{"country": "FR", "os": "ios", "device": "iphone", "local_hour": 21}\n'
    )
    outputs = {}
    for command in CURATED:
        argv = shlex.split(command)[1:]
        status: int | str | None
        try:
            status = main(argv)
        except SystemExit as exc:  # --help exits through argparse
            status = exc.code
        outputs[command] = capsys.readouterr().out
        assert status == 0, f"{command}: exit status {status}"

    assert "simulate" in outputs["clickrouter --help"]
    assert "CLICKROUTER_POLICY" in outputs["clickrouter config"]
    settings = json.loads(outputs["clickrouter config --format json"])
    assert settings["policy"]["value"] == "greedy"
    segments = sorted((tmp_path / "world" / "events").glob("*.jsonl"))
    lines = b"".join(p.read_bytes() for p in segments).splitlines()
    assert len(lines) >= 2000 and all(decode_event(line) for line in lines[:100])
    version = (tmp_path / "store" / "CURRENT").read_text().strip()
    manifest = json.loads((tmp_path / "store" / "versions" / version / "manifest.json").read_text())
    assert len(manifest["campaigns"]) == 50
    assert version in outputs["clickrouter models list --store store"]
    scores = json.loads(outputs[CURATED[-1]].splitlines()[0])
    assert len(scores) == 3 and all(0 < p < 1 for p in scores.values())


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M)}


def named_make_targets(page: Path) -> Iterator[str]:
    for line, _ in commands(page):
        for words in simple_commands(line):
            if words[0] == "make":
                yield from (w for w in words[1:] if not w.startswith("-") and "=" not in w)
    yield from re.findall(r"`make ([A-Za-z0-9_.-]+)`", page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_make_targets_exist(page: Path) -> None:
    missing = sorted(set(named_make_targets(page)) - make_targets())
    assert not missing, f"{rel(page)} names make targets the Makefile lacks: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        base, n = slug(heading), 0
        name = base
        while name in found:  # repeated headings get -1, -2, ...
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def links(page: Path) -> Iterator[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    yield from re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{rel(page)}: broken links: {broken}"


JOURNAL = re.compile(
    r"this (session|machine|box|CPU)|\b20\d\d-[01]\d-[0-3]\d\b|\bmy (tests|runs)\b", re.I
)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_docs_read_as_documentation_not_a_journal(page: Path) -> None:
    """No run dates or first-person session notes outside code examples."""
    prose = FENCE.sub("", page.read_text(encoding="utf-8"))
    prose = re.sub(r"`[^`\n]*`", "", prose)
    found = sorted({m.group(0) for m in JOURNAL.finditer(prose)})
    assert not found, f"{rel(page)}: {found}"


def test_the_settings_page_lists_every_setting() -> None:
    from clickrouter.cli.parser import env_name
    from clickrouter.config import Settings

    page = (ROOT / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
    missing = [
        field
        for field in Settings.__struct_fields__
        if f"| `{field}` |" not in page or f"`{env_name(field)}`" not in page
    ]
    assert not missing, f"docs/reference/settings.md lacks {missing}"


def test_the_formats_page_lists_every_event_and_record_field() -> None:
    from clickrouter.catalogue import Campaign
    from clickrouter.datastore.schema import RECORD_COLUMNS
    from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent

    page = (ROOT / "docs" / "reference" / "formats.md").read_text(encoding="utf-8")
    fields = {
        *ClickEvent.__struct_fields__,
        *SaleEvent.__struct_fields__,
        *CanonicalProfile.__struct_fields__,
        *Campaign.__struct_fields__,
        *RECORD_COLUMNS,
    }
    missing = sorted(f for f in fields if f"`{f}`" not in page)
    assert not missing, f"docs/reference/formats.md lacks {missing}"
