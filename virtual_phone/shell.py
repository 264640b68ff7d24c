"""The virtual phone's shell: an interpreter of the sh subset a farm sends, never a host shell.

Why an interpreter rather than a real /bin/sh in a mount namespace: every command is Python code
that reaches files only through `PhoneFilesystem.resolve` (so no path can leave the phone's
folder), nothing typed over ADB is ever handed to a host shell, it needs no privileges or
namespaces (CI runners may not allow them), and its output matches Android's toybox/mksh texts
exactly where a farm parses them. Supported: words with '…', "…", \\ quoting, $VAR ${VAR} $? $$ $!
$(…) `…`, globs, `;` `&&` `||` `|` `&` `!`, redirections (> >> < 2> 2>&1 >&2 &>) and the commands
of `commands.py`; control flow (if/for/while/case) and subshells are not supported.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hexfleet.virtual_phone.pipes import BufferOutput, Input, NullOutput, Output, Pipe

SHELL_PATH = "/system/bin/sh"
UNSUPPORTED_KEYWORDS = frozenset(
    {
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "for",
        "while",
        "until",
        "do",
        "done",
        "case",
        "esac",
        "function",
        "select",
        "{",
        "}",
        "[[",
        "]]",
        "time",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REDIRECT = re.compile(r"(\d?)(>>|>&|<&|&>|>\||>|<)")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")


class ShellSyntaxError(Exception):
    """The script cannot be parsed (mksh: `syntax error: ...`)."""


class ShellExit(Exception):  # noqa: N818 - a control-flow signal, not an error
    """`exit N` unwinds to the top of the script."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# --- syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Part of a word: literal text, a parameter ($x) or a command substitution ($(...))."""

    kind: str  # "lit" | "var" | "sub"
    text: str
    quoted: bool


@dataclass
class Word:
    segments: list[Segment] = field(default_factory=list)

    @property
    def quoted(self) -> bool:
        return any(segment.quoted for segment in self.segments)

    def literal(self) -> str | None:
        """The word's text if it is plain unquoted literal text, else None."""
        if all(seg.kind == "lit" and not seg.quoted for seg in self.segments):
            return "".join(seg.text for seg in self.segments)
        return None


@dataclass(frozen=True)
class Redirect:
    fd: int
    op: str  # ">", ">>", "<", "dup" (n>&m), "both" (&>)
    target: Word | None = None
    dup_fd: int = -1


@dataclass
class Command:
    assignments: list[tuple[str, Word]] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)


@dataclass
class Pipeline:
    commands: list[Command]
    negate: bool = False


@dataclass
class AndOr:
    first: Pipeline
    rest: list[tuple[str, Pipeline]] = field(default_factory=list)


@dataclass
class Script:
    items: list[tuple[AndOr, bool]] = field(default_factory=list)  # (list, runs in background)


# --- lexer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Op:
    text: str


def _find_closing_paren(text: str, start: int) -> int:
    """Index of the `)` closing the `$(` whose body starts at `start`."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                break
            i = end + 1
            continue
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError("'(' unmatched")


def _parameter(text: str, i: int, quoted: bool) -> tuple[Segment | None, int]:
    """Parse the expansion after a `$` at text[i-1]; None if the `$` is literal."""
    if i >= len(text):
        return None, i
    c = text[i]
    if c == "(":
        if text.startswith("((", i):
            raise ShellSyntaxError("arithmetic expansion $((...)) is not supported")
        end = _find_closing_paren(text, i + 1)
        return Segment("sub", text[i + 1 : end], quoted), end + 1
    if c == "{":
        end = text.find("}", i + 1)
        if end < 0:
            raise ShellSyntaxError("missing '}'")
        name = text[i + 1 : end]
        if not (_NAME.fullmatch(name) or name in ("?", "$", "!", "#") or name.isdigit()):
            raise ShellSyntaxError(f"${{{name}}}: bad substitution")
        return Segment("var", name, quoted), end + 1
    if c in "?$!#" or c.isdigit():
        return Segment("var", c, quoted), i + 1
    match = _NAME.match(text, i)
    if match:
        return Segment("var", match.group(0), quoted), match.end()
    return None, i


def _substitution(
    text: str,
    i: int,
    quoted: bool,
    word: Word,
    literal: list[str],
    flush_literal: Callable[[], None],
) -> int:
    """Read a `command` or $parameter at text[i] into `word` (a lone $ stays literal); returns
    where reading goes on."""
    if text[i] == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise ShellSyntaxError("unterminated `")
        segment: Segment | None = Segment("sub", text[i + 1 : end], quoted)
        j = end + 1
    else:
        segment, j = _parameter(text, i + 1, quoted)
    if segment is None:
        literal.append(text[i])
        return i + 1
    flush_literal()
    word.segments.append(segment)
    return j


def _word(text: str, i: int) -> tuple[Word, int]:
    word = Word()
    literal: list[str] = []

    def flush_literal() -> None:
        if literal:
            word.segments.append(Segment("lit", "".join(literal), False))
            literal.clear()

    while i < len(text):
        c = text[i]
        if c in " \t\n;&|<>()":
            break
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated string")
            flush_literal()
            word.segments.append(Segment("lit", text[i + 1 : end], True))
            i = end + 1
        elif c == '"':
            flush_literal()
            i = _double_quoted(text, i + 1, word)
        elif c == "\\":
            flush_literal()
            if i + 1 < len(text):
                if text[i + 1] != "\n":
                    word.segments.append(Segment("lit", text[i + 1], True))
                i += 2
            else:
                i += 1
        elif c in "`$":
            i = _substitution(text, i, False, word, literal, flush_literal)
        else:
            literal.append(c)
            i += 1
    flush_literal()
    return word, i


def _double_quoted(text: str, i: int, word: Word) -> int:
    literal: list[str] = []

    def flush_literal() -> None:
        # A "" word must still produce a (quoted, empty) segment.
        word.segments.append(Segment("lit", "".join(literal), True))
        literal.clear()

    while i < len(text):
        c = text[i]
        if c == '"':
            flush_literal()
            return i + 1
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '$`"\\\n':
            if text[i + 1] != "\n":
                literal.append(text[i + 1])
            i += 2
        elif c in "`$":
            i = _substitution(text, i, True, word, literal, flush_literal)
        else:
            literal.append(c)
            i += 1
    raise ShellSyntaxError("unterminated string")


def tokenize(text: str) -> list[Word | _Op | Redirect]:
    """Split a script into words, operators and redirections."""
    tokens: list[Word | _Op | Redirect] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t":
            i += 1
        elif c == "\\" and text.startswith("\n", i + 1):
            i += 2
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c in "\n;":
            if text.startswith(";;", i):
                raise ShellSyntaxError("';;' unexpected")
            tokens.append(_Op(";"))
            i += 1
        elif text.startswith("&&", i) or text.startswith("||", i):
            tokens.append(_Op(text[i : i + 2]))
            i += 2
        elif c in "()":
            raise ShellSyntaxError(f"'{c}' unexpected (subshells are not supported)")
        elif (match := _REDIRECT.match(text, i)) is not None and (
            match.group(1) == "" or c.isdigit()
        ):
            redirect, i = _redirect(text, match)
            tokens.append(redirect)
        elif c in "|&":
            tokens.append(_Op(c))
            i += 1
        else:
            word, i = _word(text, i)
            tokens.append(word)
    return tokens


def _redirect(text: str, match: re.Match[str]) -> tuple[Redirect, int]:
    digits, op = match.group(1), match.group(2)
    i = match.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if op in (">&", "<&"):
        end = i
        while end < len(text) and text[end].isdigit():
            end += 1
        if end == i:
            raise ShellSyntaxError(f"{op}: only a file descriptor number may follow")
        fd = int(digits) if digits else (1 if op == ">&" else 0)
        return Redirect(fd, "dup", dup_fd=int(text[i:end])), end
    if i >= len(text) or text[i] in "\n;&|<>()":
        raise ShellSyntaxError(f"missing file name after {op}")
    target, i = _word(text, i)
    if op == "&>":
        return Redirect(1, "both", target), i
    kind = {">|": ">", ">": ">", ">>": ">>", "<": "<"}[op]
    fd = int(digits) if digits else (0 if kind == "<" else 1)
    return Redirect(fd, kind, target), i


# --- parser ---------------------------------------------------------------------------------


def parse(text: str) -> Script:
    """Parse a script; raise ShellSyntaxError with mksh-like wording."""
    tokens = tokenize(text)
    pos = 0
    script = Script()

    def peek() -> Word | _Op | Redirect | None:
        return tokens[pos] if pos < len(tokens) else None

    def parse_command() -> Command:
        nonlocal pos
        command = Command()
        while (token := peek()) is not None and not isinstance(token, _Op):
            pos += 1
            if isinstance(token, Redirect):
                command.redirects.append(token)
                continue
            first = token.segments[0] if token.segments else None
            if (
                not command.words
                and first is not None
                and first.kind == "lit"
                and not first.quoted
                and (assign := _ASSIGNMENT.match(first.text))
            ):
                rest = [Segment("lit", first.text[assign.end() :], False)] + token.segments[1:]
                command.assignments.append((assign.group(1), Word(rest)))
                continue
            command.words.append(token)
        if not command.words and not command.assignments and not command.redirects:
            found = peek()
            what = found.text if isinstance(found, _Op) else "end of file"
            raise ShellSyntaxError(f"'{what}' unexpected")
        return command

    def parse_pipeline() -> Pipeline:
        nonlocal pos
        negate = False
        token = peek()
        if isinstance(token, Word) and token.literal() == "!":
            negate = True
            pos += 1
        commands = [parse_command()]
        while isinstance(peek(), _Op) and peek().text == "|":  # type: ignore[union-attr]
            pos += 1
            commands.append(parse_command())
        return Pipeline(commands, negate)

    while pos < len(tokens):
        token = peek()
        if isinstance(token, _Op) and token.text == ";":
            pos += 1
            continue
        node = AndOr(parse_pipeline())
        while isinstance(peek(), _Op) and peek().text in ("&&", "||"):  # type: ignore[union-attr]
            op = tokens[pos].text  # type: ignore[union-attr]
            pos += 1
            if isinstance(peek(), _Op):
                raise ShellSyntaxError(f"'{peek().text}' unexpected")  # type: ignore[union-attr]
            node.rest.append((op, parse_pipeline()))
        background = False
        token = peek()
        if isinstance(token, _Op):
            if token.text == "&":
                background = True
                pos += 1
            elif token.text == ";":
                pos += 1
            else:
                raise ShellSyntaxError(f"'{token.text}' unexpected")
        script.items.append((node, background))
    return script


# --- execution ------------------------------------------------------------------------------


@dataclass
class IO:
    stdin: Input
    stdout: Output
    stderr: Output


@dataclass
class ShellState:
    """What a shell session remembers between commands."""

    pid: int
    cwd: str = "/"
    variables: dict[str, str] = field(default_factory=dict)
    last_status: int = 0
    last_background_pid: int = 0
    # `NAME=value command`: the assignments exported to that one command only.
    command_env: dict[str, str] = field(default_factory=dict)


# Executes one command line after expansion: (argv, io, state) -> exit status.
Executor = Callable[[list[str], IO, ShellState], Awaitable[int]]
# Opens a redirection target: (device path, mode "rb"/"wb"/"ab", state) -> Input or Output.
Opener = Callable[[str, str, ShellState], "Input | Output"]
# Expands a glob pattern on the phone: (pattern, state) -> matches (empty if none).
Globber = Callable[[str, ShellState], list[str]]
# Starts a background job: (coroutine factory, description) -> pid of the job.
Spawner = Callable[[Callable[[], Awaitable[int]], str], int]

_GLOB_CHARS = re.compile(r"[*?\[]")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


class Interpreter:
    """Runs parsed scripts; what each command does is the executor's business."""

    def __init__(
        self,
        state: ShellState,
        *,
        execute: Executor,
        open_file: Opener,
        glob: Globber,
        spawn: Spawner,
    ) -> None:
        self.state = state
        self._execute = execute
        self._open = open_file
        self._glob = glob
        self._spawn = spawn

    async def run(self, text: str, io: IO) -> int:
        """Run a script; returns its exit status (mksh prints syntax errors with status 1)."""
        try:
            script = parse(text)
        except ShellSyntaxError as exc:
            await io.stderr.write(f"{SHELL_PATH}: syntax error: {exc}\n".encode())
            self.state.last_status = 1
            return 1
        try:
            return await self.run_script(script, io)
        except ShellExit as exc:
            self.state.last_status = exc.status
            return exc.status

    async def run_script(self, script: Script, io: IO) -> int:
        status = self.state.last_status
        for node, background in script.items:
            if background:
                self.state.last_background_pid = self._spawn(
                    lambda node=node: self._background(node), "sh"
                )
                status = 0
            else:
                status = await self._and_or(node, io)
            self.state.last_status = status
        return status

    async def _background(self, node: AndOr) -> int:
        return await self._and_or(node, IO(Input(), NullOutput(), NullOutput()))

    async def _and_or(self, node: AndOr, io: IO) -> int:
        status = await self._pipeline(node.first, io)
        for op, pipeline in node.rest:
            self.state.last_status = status
            if (op == "&&") == (status == 0):
                status = await self._pipeline(pipeline, io)
        return status

    async def _pipeline(self, pipeline: Pipeline, io: IO) -> int:
        commands = pipeline.commands
        if len(commands) == 1:
            status = await self._command(commands[0], io)
        else:
            pipes = [Pipe() for _ in commands[:-1]]
            jobs = []
            for index, command in enumerate(commands):
                stdin = pipes[index - 1].reader if index else io.stdin
                stdout = pipes[index].writer if index < len(pipes) else io.stdout
                # A command closes the pipe ends it holds when it ends, not the shell's own
                # stdin and stdout (a shell reading its script from stdin reads on after it).
                ends = [end for end in (stdin, stdout) if end not in (io.stdin, io.stdout)]
                jobs.append(self._piped(command, IO(stdin, stdout, io.stderr), ends))
            statuses = await asyncio.gather(*jobs)
            status = statuses[-1]
        if pipeline.negate:
            status = 0 if status else 1
        return status

    async def _piped(self, command: Command, io: IO, ends: list[Input | Output]) -> int:
        try:
            return await self._command(command, io)
        except BrokenPipeError:
            return 141
        finally:
            for end in ends:
                end.close()

    async def _command(self, command: Command, io: IO) -> int:
        opened: list[Input | Output] = []
        try:
            argv: list[str] = []
            for word in command.words:
                argv.extend(await self.expand(word, io))
            values = [
                (name, await self.expand_single(word, io)) for name, word in command.assignments
            ]
            if argv and argv[0] in UNSUPPORTED_KEYWORDS and command.words[0].literal():
                message = f"{SHELL_PATH}: {argv[0]}: not supported by this virtual phone's shell\n"
                await io.stderr.write(message.encode())
                return 2
            io = await self._redirect(command.redirects, io, opened)
        except ShellSyntaxError as exc:
            await io.stderr.write(f"{SHELL_PATH}: {exc}\n".encode())
            return 1
        except OSError as exc:
            await io.stderr.write(
                f"{SHELL_PATH}: can't create {exc.filename}: {exc.strerror}\n".encode()
            )
            return 1
        try:
            if not argv:
                self.state.variables.update(values)
                return 0
            self.state.command_env = dict(values)
            try:
                status = await self._execute(argv, io, self.state)
            finally:
                self.state.command_env = {}
            await io.stdout.flush()
            await io.stderr.flush()
            return status
        finally:
            for item in opened:
                item.close()

    async def _redirect(
        self, redirects: list[Redirect], io: IO, opened: list[Input | Output]
    ) -> IO:
        fds: dict[int, Input | Output] = {0: io.stdin, 1: io.stdout, 2: io.stderr}
        for redirect in redirects:
            if redirect.op == "dup":
                if redirect.dup_fd not in fds:
                    raise ShellSyntaxError(f"{redirect.dup_fd}: bad file descriptor")
                fds[redirect.fd] = fds[redirect.dup_fd]
                continue
            assert redirect.target is not None
            path = await self.expand_single(redirect.target, io)
            mode = {"<": "rb", ">": "wb", ">>": "ab", "both": "wb"}[redirect.op]
            handle = self._open(path, mode, self.state)
            opened.append(handle)
            if redirect.op == "both":
                fds[1] = fds[2] = handle
            else:
                fds[redirect.fd] = handle
        stdin, stdout, stderr = fds[0], fds[1], fds[2]
        if not isinstance(stdin, Input) or not isinstance(stdout, Output):
            raise ShellSyntaxError("file descriptor opened in the wrong direction")
        if not isinstance(stderr, Output):
            raise ShellSyntaxError("file descriptor opened in the wrong direction")
        return IO(stdin, stdout, stderr)

    # --- expansion ---------------------------------------------------------------------------

    async def _segment_value(self, segment: Segment, io: IO) -> str:
        if segment.kind == "lit":
            return segment.text
        if segment.kind == "var":
            return self._variable(segment.text)
        captured = BufferOutput()
        sub = Interpreter(
            ShellState(
                pid=self.state.pid,
                cwd=self.state.cwd,
                variables=dict(self.state.variables),
                last_status=self.state.last_status,
            ),
            execute=self._execute,
            open_file=self._open,
            glob=self._glob,
            spawn=self._spawn,
        )
        await sub.run(segment.text, IO(Input(), captured, io.stderr))
        self.state.last_status = sub.state.last_status
        return captured.data.decode("utf-8", errors="replace").rstrip("\n")

    def _variable(self, name: str) -> str:
        special = {
            "?": str(self.state.last_status),
            "$": str(self.state.pid),
            "!": str(self.state.last_background_pid or ""),
            "#": "0",
            "0": SHELL_PATH,
        }
        if name in special:
            return special[name]
        return self.state.variables.get(name, "")

    async def expand(self, word: Word, io: IO) -> list[str]:
        """Expand a word into fields: parameters, substitutions, field splitting, globbing."""
        fields: list[list[tuple[str, bool]]] = [[]]
        for segment in word.segments:
            value = await self._segment_value(segment, io)
            if segment.kind == "lit" or segment.quoted:
                fields[-1].append((value, segment.quoted or segment.kind != "lit"))
                continue
            parts = value.split()
            if value[:1].isspace() and fields[-1]:
                fields.append([])
            for index, part in enumerate(parts):
                if index:
                    fields.append([])
                fields[-1].append((part, True))
            if value[-1:].isspace() and parts:
                fields.append([])
        results: list[str] = []
        for parts in fields:
            if not parts:
                continue
            text = "".join(value for value, _ in parts)
            globbing = any(not quoted and _GLOB_CHARS.search(value) for value, quoted in parts)
            if globbing:
                pattern = "".join(
                    value if not quoted else _glob_escape(value) for value, quoted in parts
                )
                matches = self._glob(pattern, self.state)
                if matches:
                    results.extend(matches)
                    continue
            results.append(text)
        return results

    async def expand_single(self, word: Word, io: IO) -> str:
        """Expand a word that must stay one field (assignment value, redirection target)."""
        parts = [await self._segment_value(segment, io) for segment in word.segments]
        return "".join(parts)
