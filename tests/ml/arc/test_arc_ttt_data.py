from __future__ import annotations

import numpy as np
from arc_fixtures import tiny_tasks

from ml.arc.configs import TrainSettings
from ml.arc.data import ArcTask, Example
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
