"""Bundles unpack safely with or without tarfile's extraction filters (Python < 3.11.4 has none:
Debian 12's python3.11, on which notebooks in the topology tests run)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from worker import code
from worker.code import CodeError, unpack


def _bundle(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"print('hi')\n"


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.fixture(params=["filter", "no-filter"])
def tarfile_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "no-filter":
        monkeypatch.delattr(code.tarfile, "data_filter", raising=False)
    return str(request.param)


def test_a_plain_bundle_unpacks(tmp_path: Path, tarfile_kind: str) -> None:
    archive = _bundle(tmp_path / "b.tar.gz", [_file("train.py"), _file("pkg/mod.py")])
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out/train.py").read_text() == "print('hi')\n"
    assert (tmp_path / "out/pkg/mod.py").exists()


@pytest.mark.parametrize(
    "member",
    [_file("../escape.py"), _file("/etc/cron.d/x"), _link("evil", "../../outside")],
    ids=["dotdot", "absolute", "symlink-out"],
)
def test_an_unsafe_member_is_refused_and_nothing_escapes(
    tmp_path: Path, tarfile_kind: str, member: tuple[tarfile.TarInfo, bytes]
) -> None:
    archive = _bundle(tmp_path / "b.tar.gz", [_file("ok.py"), member])
    with pytest.raises(CodeError):
        unpack(archive, tmp_path / "deep/out")
    assert not (tmp_path / "deep/escape.py").exists()
    assert not (tmp_path / "escape.py").exists()
