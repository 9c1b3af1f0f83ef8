"""gitignore-style patterns, for what `baton submit --workdir` leaves out of a code bundle.

The subset of gitignore(5) implemented: blank lines and ``#`` comments; ``!`` negates (the
last matching pattern wins); a trailing ``/`` matches directories only; a pattern with a
``/`` at its start or middle is anchored to the directory of its ignore file, one without
matches a name at any depth below it; ``*`` and ``?`` do not cross ``/``, ``[...]`` is a
character class, ``**`` spans directories (``**/x``, ``x/**``, ``a/**/b``); ``\\`` escapes.
As in git, nothing inside an ignored directory can be re-included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    base: str  # directory of the ignore file, relative to the root ("" for the root)
    regex: re.Pattern[str]
    negated: bool
    directories_only: bool
    pattern: str

    def matches(self, path: str, *, is_dir: bool) -> bool:
        if self.directories_only and not is_dir:
            return False
        if self.base:
            if not path.startswith(self.base + "/"):
                return False
            path = path[len(self.base) + 1 :]
        return self.regex.fullmatch(path) is not None


def _translate(glob: str) -> str:
    """A gitignore glob (no leading or trailing slash) as a regular expression."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i) and (i == 0 or glob[i - 1] == "/"):
            out.append("(?:.*/)?")  # zero or more directories
            i += 3
        elif glob.startswith("**", i) and i + 2 == n and (i == 0 or glob[i - 1] == "/"):
            out.append(".*")  # everything inside
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[^"), i) else i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1 : end]
            if body.startswith(("!", "^")):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_line(line: str, *, base: str = "") -> Rule | None:
    """One line of an ignore file in directory ``base``; None for blanks and comments."""
    text = line.rstrip("\n").rstrip("\r")
    # Trailing spaces are dropped unless escaped.
    while text.endswith(" ") and not text.endswith("\\ "):
        text = text[:-1]
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated or text.startswith(("\\#", "\\!")):  # a leading backslash: a literal "#" or "!"
        text = text[1:]
    directories_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    glob = text.lstrip("/")
    regex = _translate(glob)
    if not anchored:
        regex = "(?:.*/)?" + regex
    return Rule(
        base=base,
        regex=re.compile(regex, re.DOTALL),
        negated=negated,
        directories_only=directories_only,
        pattern=line.strip(),
    )


@dataclass(frozen=True)
class IgnoreRules:
    """Rules in the order read; later rules (deeper files, .batonignore) override earlier."""

    rules: tuple[Rule, ...] = ()

    def extended(self, text: str, *, base: str = "") -> IgnoreRules:
        parsed = (parse_line(line, base=base) for line in text.splitlines())
        return IgnoreRules((*self.rules, *(rule for rule in parsed if rule is not None)))

    def ignored(self, path: str, *, is_dir: bool) -> bool:
        """Whether ``path`` (relative to the root, with ``/``) is left out."""
        verdict = False
        for rule in self.rules:
            if rule.matches(path, is_dir=is_dir):
                verdict = not rule.negated
        return verdict
