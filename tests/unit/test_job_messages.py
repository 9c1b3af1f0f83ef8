"""Every message a job writes is checked by type before the agent acts on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.messages import (
    MAX_METRICS,
    MAX_RESULT_BYTES,
    CheckpointReady,
    Invalid,
    ProgressUpdate,
    Result,
    decode,
    merge_metrics,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "attempt" / "checkpoints"
    (root / "ckpt-000000000005").mkdir(parents=True)
    return root


def refused(line: bytes | str, root: Path) -> Invalid:
    with pytest.raises(Invalid) as caught:
        decode(line.encode() if isinstance(line, str) else line, checkpoint_root=root)
    return caught.value


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "not a JSON line"),
        ("[1]", "not a JSON object"),
        ('"done"', "not a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "not a JSON line"),  # deeper than Python recurses
        ('{"type":"chat"}', "unknown message type 'chat'"),
        ('{"step":1}', "unknown message type None"),
        ('{"type":"progress","step":-1}', "step must be an integer from 0"),
        ('{"type":"progress","step":"3"}', "not '3'"),
        ('{"type":"progress","step":true}', "not True"),
        ('{"type":"progress","step":1.5}', "not 1.5"),
        ('{"type":"progress","step":99999999999}', "step must be an integer from 0 to 2147483647"),
        ('{"type":"progress","total":-2}', "total must be"),
        ('{"type":"progress","step":1,"metrics":[1,2]}', "metrics must be an object, not [1, 2]"),
        ('{"type":"checkpoint","step":"x","dir":"/tmp"}', "step must be an integer"),
        ('{"type":"checkpoint","step":null}', "step must be an integer from 0 to 2147483647,"),
        ('{"type":"result","values":[1]}', "values must be an object"),
    ],
)
def test_wrong_messages_are_refused_with_the_reason(line: str, says: str, root: Path) -> None:
    problem = refused(line, root)
    assert says in problem.reason
    assert not problem.fatal


def test_a_quoted_bad_value_is_truncated(root: Path) -> None:
    problem = refused(json.dumps({"type": "progress", "step": "x" * 10_000}), root)
    assert len(problem.reason) < 400 and "10002 characters" in problem.reason


def test_a_checkpoint_dir_must_be_inside_the_checkpoint_folder(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (root / "link").symlink_to(elsewhere)
    for where in (
        str(elsewhere),
        str(root / ".." / ".." / "precious"),
        str(root / "link"),  # a symlink out of the folder
        str(root),  # the folder itself is the job's staging area, not a checkpoint
    ):
        line = json.dumps({"type": "checkpoint", "step": 5, "dir": where})
        assert "is not inside" in refused(line, root).reason
    missing = json.dumps({"type": "checkpoint", "step": 5, "dir": str(root / "nope")})
    assert "is not a directory" in refused(missing, root).reason
    good = json.dumps({"type": "checkpoint", "step": 5, "dir": str(root / "ckpt-000000000005")})
    assert decode(good.encode(), checkpoint_root=root) == CheckpointReady(
        step=5, directory=(root / "ckpt-000000000005").resolve()
    )


def test_progress_keeps_finite_numbers_and_says_what_it_dropped(root: Path) -> None:
    long_name = "n" * 101
    line = (
        '{"type":"progress","step":3,"total":null,"metrics":{"loss":0.5,"acc":1,"bad":NaN,'
        f'"up":Infinity,"down":-Infinity,"s":"1","b":true,"big":{"9" * 400},"{long_name}":1}}}}'
    )
    message = decode(line.encode(), checkpoint_root=root)
    assert isinstance(message, ProgressUpdate)
    assert (message.step, message.total) == (3, None)
    assert message.metrics == {"loss": 0.5, "acc": 1.0}
    assert len(message.dropped) == 7
    assert any("'bad': nan is not a finite number" in text for text in message.dropped)
    assert any("name over 100 characters" in text for text in message.dropped)


def test_metrics_are_capped_by_name_across_messages() -> None:
    current = {"loss": 1.0}
    dropped = merge_metrics(current, {f"m{i}": float(i) for i in range(10_000)})
    assert len(current) == MAX_METRICS and "m0" in current
    assert dropped == [f"9,801 metric names past the first {MAX_METRICS} (e.g. 'm199') dropped"]
    assert merge_metrics(current, {"loss": 0.25, "new": 1.0}) != []
    assert current["loss"] == 0.25, "a known name is still updated when the cap is reached"


def test_a_result_has_non_finite_numbers_nulled(root: Path) -> None:
    line = b'{"type":"result","values":{"score":NaN,"runs":[1,Infinity],"ok":"yes"}}'
    message = decode(line, checkpoint_root=root)
    assert isinstance(message, Result)
    assert message.values == {"score": None, "runs": [1, None], "ok": "yes"}
    assert len(message.dropped) == 2


def test_a_result_without_values_is_empty(root: Path) -> None:
    assert decode(b'{"type":"result"}', checkpoint_root=root) == Result(values={})


def test_an_oversized_result_is_fatal(root: Path) -> None:
    line = json.dumps({"type": "result", "values": {"blob": "x" * MAX_RESULT_BYTES}})
    problem = refused(line, root)
    assert problem.fatal
    assert f"over the limit of {MAX_RESULT_BYTES:,} bytes" in problem.reason
