"""What `baton submit --workdir` leaves out: gitignore-style rules, and the packed archive."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from baton_client.bundle import check_size, pack
from baton_client.errors import BundleTooLarge
from baton_client.ignore import IgnoreRules


def _rules(text: str, base: str = "") -> IgnoreRules:
    return IgnoreRules().extended(text, base=base)


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.pyc", "a.pyc", False, True),
        ("*.pyc", "deep/down/a.pyc", False, True),  # no slash: any depth
        ("*.pyc", "a.py", False, False),
        ("data/", "data", True, True),
        ("data/", "data", False, False),  # trailing slash: directories only
        ("data/", "sub/data", True, True),
        ("/build", "build", True, True),  # leading slash: anchored
        ("/build", "src/build", True, False),
        ("docs/*.md", "docs/a.md", False, True),  # a middle slash anchors too
        ("docs/*.md", "x/docs/a.md", False, False),
        ("docs/*.md", "docs/sub/a.md", False, False),  # * does not cross /
        ("**/logs", "logs", True, True),
        ("**/logs", "a/b/logs", True, True),
        ("out/**", "out/a/b.txt", False, True),
        ("out/**", "out", True, False),
        ("a/**/z", "a/z", False, True),
        ("a/**/z", "a/b/c/z", False, True),
        ("a/**/z", "b/a/z", False, False),
        ("file?.txt", "file1.txt", False, True),
        ("file?.txt", "file10.txt", False, False),
        ("[abc].txt", "b.txt", False, True),
        ("[!abc].txt", "b.txt", False, False),
        ("[!abc].txt", "d.txt", False, True),
        ("\\#hash", "#hash", False, True),
        ("# a comment", "# a comment", False, False),
        ("trailing   ", "trailing", False, True),
    ],
)
def test_patterns(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    assert _rules(pattern).ignored(path, is_dir=is_dir) is ignored


def test_negation_and_last_match_wins() -> None:
    rules = _rules("*.log\n!keep.log\n")
    assert rules.ignored("x.log", is_dir=False)
    assert not rules.ignored("keep.log", is_dir=False)
    assert _rules("!keep.log\n*.log\n").ignored("keep.log", is_dir=False)


def test_rules_of_a_nested_file_apply_below_it_only() -> None:
    rules = _rules("*.csv\n/local\n", base="sub")
    assert rules.ignored("sub/a.csv", is_dir=False)
    assert rules.ignored("sub/deeper/a.csv", is_dir=False)
    assert not rules.ignored("a.csv", is_dir=False)
    assert rules.ignored("sub/local", is_dir=True)
    assert not rules.ignored("sub/x/local", is_dir=True)


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _names(archive: Path) -> set[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()}


def test_pack_honours_gitignore_batonignore_and_skips_git(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(
        src,
        {
            ".gitignore": "*.pyc\ndata/\n!important.pyc\n",
            ".batonignore": "secrets.txt\n",
            "train.py": "print('hi')\n",
            "helper/__init__.py": "",
            "helper/x.pyc": "compiled",
            "important.pyc": "kept by negation",
            "data/big.bin": "x" * 1000,
            "secrets.txt": "nope",
            ".git/HEAD": "ref: refs/heads/main\n",
            "sub/.gitignore": "*.tmp\n",
            "sub/a.tmp": "t",
            "sub/a.txt": "t",
            "a.tmp": "kept: the sub/.gitignore rule applies under sub/ only",
        },
    )
    os.symlink("train.py", src / "inside-link")
    os.symlink("/etc/hostname", src / "outside-link")
    packed = pack(src, tmp_path / "b.tar.gz")
    assert _names(packed.archive) == {
        ".gitignore",
        ".batonignore",
        "train.py",
        "helper/__init__.py",
        "important.pyc",
        "sub/.gitignore",
        "sub/a.txt",
        "a.tmp",
        "inside-link",
    }
    assert packed.skipped_links == ["outside-link"]
    # Reproducible: the same files give the same bytes (and so the same digest).
    again = pack(src, tmp_path / "again.tar.gz")
    assert again.archive.read_bytes() == packed.archive.read_bytes()


def test_pack_over_the_cap_names_the_largest_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(os.urandom(1_300_000))
    (src / "small.py").write_text("x = 1\n")
    packed = pack(src, tmp_path / "b.tar.gz")
    with pytest.raises(BundleTooLarge) as refused:
        check_size(packed, max_mb=1)
    message = str(refused.value)
    assert "1 MB cap" in message and message.index("weights.bin") < message.index("small.py")
