"""The worker's log shipper against a recording stand-in for the control plane's client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker import logship
from worker.client import LeaseLost, Unavailable
from worker.logship import LogShipper


class Recorder:
    """Takes the shipper's requests; ``fail`` holds exceptions to raise, one per request."""

    def __init__(self, *fail: Exception) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = list(fail)

    def request(self, method: str, path: str, *, json: dict[str, Any], **_: Any) -> None:
        assert (method, path) == ("POST", logship.PATH)
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(json)


def _shipper(client: Recorder, log: Path) -> LogShipper:
    return LogShipper(client, path=log, lease_token="7-abc")  # type: ignore[arg-type]


def test_chunks_are_contiguous_and_never_split_a_character(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    # "é" straddles the first chunk's end; a NUL byte and an invalid byte come later.
    raw = b"a" * (logship.CHUNK_BYTES - 1) + "é".encode() + b"tail\x00\xff\n"
    log.write_bytes(raw)
    client = Recorder()
    shipper = _shipper(client, log)
    shipper._ship(final=True)
    offset = 0
    for chunk in client.sent:
        assert chunk["offset"] == offset and chunk["lease_token"] == "7-abc"
        offset += len(chunk["data"].encode())
    text = "".join(chunk["data"] for chunk in client.sent)
    assert text == "a" * (logship.CHUNK_BYTES - 1) + "étail\ufffd\ufffd\n"


def test_a_failed_chunk_is_resent_at_the_same_offset_and_409_stops(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("one\n")
    client = Recorder(Unavailable("down"))
    shipper = _shipper(client, log)
    shipper._ship()
    assert client.sent == []
    with log.open("a") as fh:
        fh.write("two\n")
    shipper._ship()
    shipper._ship()
    assert [(c["offset"], c["data"]) for c in client.sent] == [(0, "one\n"), (4, "two\n")]

    client.fail.append(LeaseLost(409, "lease ended"))
    with log.open("a") as fh:
        fh.write("three\n")
    shipper._ship()
    shipper._ship()
    assert len(client.sent) == 2, "a refused lease ships nothing more"


def test_a_flood_skips_to_the_newest_output(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    flood = b"x" * (logship.MAX_BACKLOG_BYTES + 10) + b"newest\n"
    log.write_bytes(flood)
    client = Recorder()
    _shipper(client, log)._ship(final=True)
    assert client.sent[0]["offset"] == len(flood) - logship.MAX_BACKLOG_BYTES
    assert "".join(c["data"] for c in client.sent).endswith("newest\n")
    assert sum(len(c["data"]) for c in client.sent) == logship.MAX_BACKLOG_BYTES
