from __future__ import annotations

import numpy as np
import pytest
from arc_fixtures import TINY_SYSTEM_PROMPT, char_tokenizer, tiny_tasks
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ml.arc.configs import PromptSettings
from ml.arc.data import Episode, Example
from ml.arc.formatting import CODECS, PromptBuilder
from ml.arc.ttt import IGNORE_INDEX, encode

# A loaded, shared CPU must not turn slow examples into failures.
no_deadline = settings(deadline=None)
grids = st.tuples(st.integers(1, 30), st.integers(1, 30)).flatmap(
    lambda shape: arrays(np.uint8, shape, elements=st.integers(0, 9))
)
SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


@no_deadline
@given(grid=grids, codec=st.sampled_from(sorted(CODECS)))
def test_codecs_round_trip(grid: np.ndarray, codec: str) -> None:
    assert np.array_equal(CODECS[codec].decode(CODECS[codec].encode(grid)), grid)


def test_recipe_grid_text() -> None:
    grid = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    assert CODECS["python_list"].encode(grid) == "[[0, 1], [2, 3]]"
    assert CODECS["digits"].encode(grid) == "01\n23"


@pytest.mark.parametrize(
    ("codec", "text"),
    [
        ("python_list", "[[1, 2], [3]]"),
        ("python_list", "[[1, 12]]"),
        ("python_list", "[[1, 2]"),
        ("python_list", ""),
        ("digits", "12\n3"),
        ("digits", "1a"),
        ("digits", ""),
    ],
)
def test_codecs_reject_malformed_text(codec: str, text: str) -> None:
    assert CODECS[codec].decode(text) is None


def identity_episode() -> Episode:
    """Outputs equal inputs: a demo output's text also appears as its input."""
    grids = [np.array([[i, 0]], dtype=np.uint8) for i in range(1, 4)]
    return Episode(tuple(Example(g, g) for g in grids[:2]), grids[2], grids[2])


@pytest.mark.parametrize("chat", [False, True])
def test_loss_spans_cover_exactly_the_outputs(tokenizer, chat: bool) -> None:
    tokenizer.chat_template = SIMPLE_CHAT_TEMPLATE if chat else None
    builder = PromptBuilder(PromptSettings(system_prompt=TINY_SYSTEM_PROMPT), tokenizer)
    episode = identity_episode()
    rendered = builder.render(episode, loss_on_demos=True)
    assert rendered.text.startswith(builder.prompt(episode))
    assert rendered.loss_spans[-1] == (len(builder.prompt(episode)), len(rendered.text))
    pieces = [rendered.text[a:b] for a, b in rendered.loss_spans]
    assert pieces[:2] == ["[[1, 0]]#", "[[2, 0]]#"]
    assert pieces[2].startswith("[[3, 0]]#")
    # Each demo output span lies after its own input, not on the identical input text.
    assert rendered.text[: rendered.loss_spans[0][0]].endswith("[[1, 0]] -> ")
    only_answer = builder.render(episode, loss_on_demos=False)
    assert len(only_answer.loss_spans) == 1


def test_plain_render_ends_with_eos_and_chat_with_the_template(tokenizer) -> None:
    tokenizer.chat_template = None
    builder = PromptBuilder(PromptSettings(system_prompt="S\n"), tokenizer)
    rendered = builder.render(identity_episode(), loss_on_demos=False)
    assert rendered.text == (
        "S\n[[1, 0]] -> [[1, 0]]#\n[[2, 0]] -> [[2, 0]]#\n[[3, 0]] -> [[3, 0]]#</s>"
    )
    tokenizer.chat_template = SIMPLE_CHAT_TEMPLATE
    chat = PromptBuilder(PromptSettings(system_prompt="S\n"), tokenizer)
    assert chat.prompt(identity_episode()) == (
        "<system>S\n[[1, 0]] -> [[1, 0]]#\n[[2, 0]] -> [[2, 0]]#\n<user>[[3, 0]] ->\n<assistant>"
    )
    no_chat = PromptBuilder(PromptSettings(system_prompt="S\n", use_chat_template=False), tokenizer)
    assert not no_chat.chat


def test_encode_puts_loss_only_on_output_tokens(tokenizer) -> None:
    tokenizer.chat_template = None
    builder = PromptBuilder(PromptSettings(system_prompt=TINY_SYSTEM_PROMPT), tokenizer)
    task = tiny_tasks()[0]
    episode = Episode(task.train[:2], task.train[2].input, task.train[2].output)
    example = encode(builder, episode, loss_on_demos=True)
    scored = "".join(
        tokenizer.decode([t]) if label != IGNORE_INDEX else "|"
        for t, label in zip(example.input_ids, example.labels, strict=True)
    )
    outputs = [builder.answer_text(ex.output) for ex in episode.demos]
    assert [part for part in scored.split("|") if part] == [
        *outputs,
        builder.answer_text(episode.answer) + "</s>",
    ]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("[[1, 2]]#", [[1, 2]]),
        (" [[1, 2]]#\n[[9]]", [[1, 2]]),
        ("[[1, 2]]", [[1, 2]]),
        ("[[1, 2]#", None),
        ("garbage", None),
    ],
)
def test_parse_completions(tokenizer, completion: str, expected) -> None:
    builder = PromptBuilder(PromptSettings(), tokenizer)
    grid = builder.parse(completion)
    assert (grid.tolist() if grid is not None else None) == expected


def test_headers_are_configurable(tokenizer) -> None:
    tokenizer.chat_template = None
    settings = PromptSettings(
        system_prompt="",
        grid_format="digits",
        input_header="in:\n",
        output_header="out:\n",
        io_separator="\n",
        output_footer="\n.",
    )
    builder = PromptBuilder(settings, tokenizer)
    grid = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    assert builder.query_text(grid) == "in:\n12\n34\n"
    assert builder.answer_text(grid) == "out:\n12\n34\n."
    assert builder.parse("out:\n12\n34\n.\nin:").tolist() == [[1, 2], [3, 4]]


@no_deadline
@given(grid=grids)
def test_numpy_format_is_what_numpy_prints(grid: np.ndarray) -> None:
    # MARC's checkpoints were trained on str(grid); the codec must write exactly that text
    # (no wrapping of a 30-wide row, no "..." summary of a 30 x 30 grid).
    assert CODECS["numpy"].encode(grid) == str(grid)


def test_numpy_grid_text_by_hand() -> None:
    codec = CODECS["numpy"]
    assert codec.encode(np.array([[0, 1], [2, 3]], dtype=np.uint8)) == "[[0 1]\n [2 3]]"
    assert codec.encode(np.array([[7]], dtype=np.uint8)) == "[[7]]"
    assert codec.encode(np.array([[1, 2, 3]], dtype=np.uint8)) == "[[1 2 3]]"
    assert codec.encode(np.array([[1], [2]], dtype=np.uint8)) == "[[1]\n [2]]"
    wide = np.full((30, 30), 5, dtype=np.uint8)
    text = codec.encode(wide)
    assert text.count("\n") == 29 and "..." not in text
    assert text.splitlines()[1] == " [" + " ".join(["5"] * 30) + "]"
    assert codec.decode("[[0 1]\n [2 3]]").tolist() == [[0, 1], [2, 3]]
    # What a model writes around the grid: surrounding blanks are tolerated.
    assert codec.decode("  [[0 1]\n [2 3]]\n").tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    "text",
    [
        "[[0 1]\n [2]]",  # ragged
        "[[1 12]]",  # not a colour
        "[[1 2]",  # unclosed
        "[[1, 2]]",  # the python-list format is another codec
        "[[1  2]]",  # not numpy's spacing
        "[]",
        "",
    ],
)
def test_numpy_codec_rejects_malformed_text(text: str) -> None:
    assert CODECS["numpy"].decode(text) is None


def test_numpy_prompt_and_parse_by_hand(tokenizer) -> None:
    tokenizer.chat_template = None
    builder = PromptBuilder(PromptSettings(system_prompt="S\n", grid_format="numpy"), tokenizer)
    rendered = builder.render(identity_episode(), loss_on_demos=True)
    assert rendered.text == ("S\n[[1 0]] -> [[1 0]]#\n[[2 0]] -> [[2 0]]#\n[[3 0]] -> [[3 0]]#</s>")
    pieces = [rendered.text[a:b] for a, b in rendered.loss_spans]
    assert pieces == ["[[1 0]]#", "[[2 0]]#", "[[3 0]]#</s>"]
    assert builder.parse("[[4 5]\n [6 7]]#\n[[9]]").tolist() == [[4, 5], [6, 7]]
    assert builder.parse("[[4, 5]]#") is None
