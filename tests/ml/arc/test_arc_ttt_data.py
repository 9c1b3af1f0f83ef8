from __future__ import annotations

import numpy as np
from arc_fixtures import TINY_SYSTEM_PROMPT, char_tokenizer, tiny_tasks

from ml.arc.configs import PromptSettings, TrainSettings
from ml.arc.data import ArcTask, Episode, Example
from ml.arc.formatting import PromptBuilder
from ml.arc.ttt import encode, training_set
from ml.arc.ttt_data import episode_key, leave_out_episodes, ttt_episodes


def grid_key(grid: np.ndarray) -> bytes:
    return bytes(grid.shape) + grid.tobytes()


def test_leave_one_out_holds_out_each_demo_once() -> None:
    task = tiny_tasks()[1]  # 3 demonstrations
    episodes = leave_out_episodes(task, 1)
    assert len(episodes) == 3
    for held, episode in zip(task.train, episodes, strict=True):
        assert np.array_equal(episode.query, held.input)
        assert np.array_equal(episode.answer, held.output)
        assert len(episode.demos) == 2
        assert grid_key(held.input) not in {grid_key(ex.input) for ex in episode.demos}


def test_leave_two_out_and_too_few_demos() -> None:
    task = tiny_tasks()[1]
    assert len(leave_out_episodes(task, 2)) == 3 * 2
    assert all(len(e.demos) == 1 for e in leave_out_episodes(task, 2))
    single = ArcTask("one", task.train[:1], task.test_inputs)
    assert leave_out_episodes(single, 1) == []
    assert ttt_episodes(single, TrainSettings(), np.random.default_rng(0)) == []


def test_ttt_set_is_capped_unique_in_bounds_and_seeded() -> None:
    big = np.arange(15 * 15, dtype=np.uint8).reshape(15, 15) % 10
    task = ArcTask(
        "big", tuple(Example(np.roll(big, i), np.roll(big, -i)) for i in range(3)), (big,)
    )
    settings = TrainSettings(max_examples=40)
    episodes = ttt_episodes(task, settings, np.random.default_rng(0))
    assert len(episodes) == 40
    assert len({episode_key(e) for e in episodes}) == 40
    # upscale2 of a 15x15 grid fits (30x30); repeat of an upscale would not and is dropped.
    assert all(max(grid.shape) <= 30 for e in episodes for grid in e.grids())
    again = ttt_episodes(task, settings, np.random.default_rng(0))
    assert [episode_key(e) for e in again] == [episode_key(e) for e in episodes]
    other = ttt_episodes(task, settings, np.random.default_rng(1))
    assert [episode_key(e) for e in other] != [episode_key(e) for e in episodes]


def test_small_task_is_topped_up_with_leave_two_out() -> None:
    task = tiny_tasks()[1]
    plain = TrainSettings(transforms=[], color_permutations=0, max_examples=100)
    episodes = ttt_episodes(task, plain, np.random.default_rng(0))
    # 3 leave-one-out episodes plus 6 leave-two-out ones, nothing augmented.
    assert len(episodes) == 9
    recoloured = ttt_episodes(
        task, plain.model_copy(update={"color_permutations": 1}), np.random.default_rng(0)
    )
    assert len(recoloured) == 18


# --- MARC: the length filter before the cap; single-demonstration tasks get TTT too ---

RESIZING = TrainSettings(
    transforms=["upscale2", "upscale_h2", "upscale_w2", "repeat2"], max_examples=8
)


def small_enough(episode: Episode) -> bool:
    """Stands in for the token limit: rejects every resized (2x) episode of the 2x2 task."""
    return all(max(grid.shape) <= 2 for grid in episode.grids())


def test_length_filter_before_the_cap_keeps_the_cap_full() -> None:
    task = tiny_tasks()[1]  # 2x2 grids; only unresized (and recoloured) episodes are short
    marc = RESIZING.model_copy(update={"length_filter": "before_cap"})
    before = ttt_episodes(task, marc, np.random.default_rng(0), fits=small_enough)
    assert len(before) == 8 and all(small_enough(e) for e in before)
    # Baton's earlier order: cap first (filtering is the caller's, after), so most of the
    # capped set is then too long.
    after = ttt_episodes(task, RESIZING, np.random.default_rng(0), fits=small_enough)
    assert len(after) == 8
    assert sum(small_enough(e) for e in after) < 8


def test_training_set_filters_tokenized_examples_before_the_cap() -> None:
    builder = PromptBuilder(PromptSettings(system_prompt=TINY_SYSTEM_PROMPT), char_tokenizer())
    task = tiny_tasks()[1]
    unresized = Episode(task.train[:1], task.train[2].input, task.train[2].output)
    limit = len(encode(builder, unresized, loss_on_demos=True).input_ids) + 10
    marc = RESIZING.model_copy(update={"length_filter": "before_cap"})
    kept = training_set(task, marc, builder, seed=0, max_seq_len=limit)
    assert len(kept) == 8 and all(len(e.input_ids) <= limit for e in kept)
    assert len(training_set(task, RESIZING, builder, seed=0, max_seq_len=limit)) < 8


def test_single_demonstration_tasks_get_augmented_demo_free_episodes() -> None:
    task = tiny_tasks()[0]
    single = ArcTask("one", task.train[:1], task.test_inputs)
    marc = TrainSettings(transforms=["rot90", "flip_lr", "transpose"], demo_free_episodes=True)
    episodes = ttt_episodes(single, marc, np.random.default_rng(0))
    # The demonstration itself, 3 transforms of it, and a recoloured copy of each.
    assert len(episodes) == 8
    assert all(e.demos == () for e in episodes)
    demo = task.train[0]
    assert any(
        np.array_equal(e.query, demo.input.T) and np.array_equal(e.answer, demo.output.T)
        for e in episodes
    )
    # Two demonstrations: leave-two-out adds the demo-free episodes MARC trains on as well.
    pair = ArcTask("two", task.train[:2], task.test_inputs)
    assert len(leave_out_episodes(pair, 2, min_kept=0)) == 2
    assert leave_out_episodes(pair, 2) == []


def test_a_demo_free_episode_renders_as_query_and_answer() -> None:
    tokenizer = char_tokenizer()
    builder = PromptBuilder(PromptSettings(system_prompt="S\n", grid_format="numpy"), tokenizer)
    grid = np.array([[1, 2]], np.uint8)
    rendered = builder.render(Episode((), grid, grid[:, ::-1]), loss_on_demos=True)
    assert rendered.text == "S\n[[1 2]] -> [[2 1]]#</s>"
    assert [rendered.text[a:b] for a, b in rendered.loss_spans] == ["[[2 1]]#</s>"]
