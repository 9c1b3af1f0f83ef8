"""Grid text formats and the prompt template (the recipe's by default)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ml.arc.configs import PromptSettings
from ml.arc.data import Episode, Grid, valid_grid


class GridCodec(Protocol):
    def encode(self, grid: Grid) -> str: ...

    def decode(self, text: str) -> Grid | None:
        """The grid written in ``text``, or None if it is not a valid ARC grid."""


class PythonListCodec:
    """The recipe's format: ``[[0, 1], [2, 3]]``."""

    def encode(self, grid: Grid) -> str:
        return str(grid.tolist())

    def decode(self, text: str) -> Grid | None:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            return None
        return valid_grid(rows)


class DigitsCodec:
    """One line of digits per row: ``01\\n23``; about a third of the tokens of a list."""

    def encode(self, grid: Grid) -> str:
        return "\n".join("".join(map(str, row)) for row in grid.tolist())

    def decode(self, text: str) -> Grid | None:
        lines = text.strip().split("\n")
        if not all(line.isdigit() and line.isascii() for line in lines):
            return None
        return valid_grid([[int(ch) for ch in line] for line in lines])


class NumpyCodec:
    """What ``str()`` of a numpy array prints: ``[[0 1]\n [2 3]]``. MARC's fine-tuned
    checkpoints were trained on this text (its ``PythonListGridRepresenter`` is ``str(grid)``)."""

    # One row: its brackets around single digits separated by one space.
    _ROW = re.compile(r"\[([0-9](?: [0-9])*)\]")

    def encode(self, grid: Grid) -> str:
        # numpy's default print options, spelled out: a 30 x 30 grid (900 cells, 62 characters
        # a row) is neither summarised nor wrapped, whatever options the process has set.
        return np.array2string(grid, max_line_width=75, threshold=1000, separator=" ")

    def decode(self, text: str) -> Grid | None:
        text = text.strip()
        if not (text.startswith("[") and text.endswith("]")):
            return None
        rows = []
        for line in text[1:-1].split("\n"):
            match = self._ROW.fullmatch(line.strip())
            if match is None:
                return None
            rows.append([int(cell) for cell in match.group(1).split(" ")])
        return valid_grid(rows)


CODECS: dict[str, GridCodec] = {
    "python_list": PythonListCodec(),
    "digits": DigitsCodec(),
    "numpy": NumpyCodec(),
}


@dataclass(frozen=True)
class Rendered:
    """A training text and the character spans that carry loss."""

    text: str
    loss_spans: tuple[tuple[int, int], ...]


class PromptBuilder:
    """Turn episodes into prompt text (chat template when the tokenizer has one) and back."""

    def __init__(self, settings: PromptSettings, tokenizer: Any) -> None:
        self.settings = settings
        self.codec = CODECS[settings.grid_format]
        self.tokenizer = tokenizer
        self.chat = settings.use_chat_template and bool(getattr(tokenizer, "chat_template", None))

    def query_text(self, grid: Grid) -> str:
        s = self.settings
        return s.input_header + self.codec.encode(grid) + s.io_separator

    def answer_text(self, grid: Grid) -> str:
        s = self.settings
        return s.output_header + self.codec.encode(grid) + s.output_footer

    def _system(self, episode: Episode) -> str:
        shots = "".join(
            self.query_text(ex.input) + self.answer_text(ex.output) + "\n" for ex in episode.demos
        )
        return self.settings.system_prompt + shots

    def _messages(self, episode: Episode) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self._system(episode)},
            {"role": "user", "content": self.query_text(episode.query)},
        ]

    def prompt(self, episode: Episode) -> str:
        """The text the model continues with its answer."""
        messages = self._messages(episode)
        if not self.chat:
            return "".join(message["content"] for message in messages)
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def render(self, episode: Episode, *, loss_on_demos: bool) -> Rendered:
        """Prompt plus answer, with loss on the answer (and on each demo output if asked)."""
        if episode.answer is None:
            raise ValueError("rendering a training text needs the episode's answer")
        prompt = self.prompt(episode)
        answer = self.answer_text(episode.answer)
        if self.chat:
            text = self.tokenizer.apply_chat_template(
                [*self._messages(episode), {"role": "assistant", "content": answer}],
                tokenize=False,
            )
            if not text.startswith(prompt):
                raise ValueError("the chat template does not extend the prompt with the answer")
        else:
            text = prompt + answer + (self.tokenizer.eos_token or "")
        spans = self._demo_output_spans(text, episode) if loss_on_demos else []
        # The answer span runs to the end so the model also learns to stop (end-of-turn).
        spans.append((len(prompt), len(text)))
        return Rendered(text, tuple(spans))

    def _demo_output_spans(self, text: str, episode: Episode) -> list[tuple[int, int]]:
        spans, cursor = [], 0
        for example in episode.demos:
            # Find the input first: an output equal to its input must not match the input.
            cursor = _find(text, self.query_text(example.input), cursor)[1]
            span = _find(text, self.answer_text(example.output), cursor)
            spans.append(span)
            cursor = span[1]
        return spans

    def parse(self, completion: str) -> Grid | None:
        """The grid in a model's completion, or None."""
        s = self.settings
        text = completion.strip()
        if s.output_header and text.startswith(s.output_header.strip()):
            text = text[len(s.output_header.strip()) :]
        if s.output_footer:
            text = text.split(s.output_footer, 1)[0]
        return self.codec.decode(text.strip())


def _find(text: str, part: str, start: int) -> tuple[int, int]:
    at = text.find(part, start)
    if at < 0:
        raise ValueError(f"the rendered prompt does not contain {part[:40]!r}")
    return at, at + len(part)
