"""Language models that turn a video's facts into a description.

A describer gets, per video, the fact lines of ``ml.video.facts.prompt_lines`` and returns
one sentence. Decoding is greedy, so a description is a function of the facts and the model.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from ml.common.device import choose_device
from ml.video.configs import DescriberConfig
from ml.video.facts import Facts, prompt_lines, template_description

SYSTEM = (
    "You describe the motion of a point in a short video for a reader, in one sentence. "
    "Name the shape and the direction given, and quote the numbers exactly as given."
)


# Worked examples shown before each video's facts (few-shot prompting): made-up facts and
# the template's sentence for them, so a model sees what a faithful answer looks like.
EXAMPLES = (
    Facts(
        shape="linear",
        direction="left",
        scalars={"speed": 1.37},
        vectors={"start": (0.52, 0.1, -0.33), "velocity": (-1.21, 0.34, 0.52)},
        forecast_end=(-0.61, 0.41, 0.15),
    ),
    Facts(
        shape="helical",
        direction="up",
        scalars={"radius": 0.48, "turns per unit time": 1.62, "pitch": 0.91},
        vectors={"centre": (0.12, -0.3, 0.05)},
        forecast_end=(0.4, -0.92, 0.21),
    ),
)
EXAMPLE_HORIZON = 4


class MissingSecretError(RuntimeError):
    """The describer needs an API key that the job was not given."""


class Describer(Protocol):
    def describe(self, facts: list[list[str]]) -> list[str]: ...


def user_message(lines: list[str]) -> str:
    return "Describe this motion in one sentence.\n" + "\n".join(lines)


def chat_messages(lines: list[str]) -> list[dict[str, str]]:
    """The system message, the worked examples as earlier turns, then this video's facts."""
    messages = [{"role": "system", "content": SYSTEM}]
    for example in EXAMPLES:
        messages.append(
            {"role": "user", "content": user_message(prompt_lines(example, EXAMPLE_HORIZON))}
        )
        messages.append(
            {"role": "assistant", "content": template_description(example, EXAMPLE_HORIZON)}
        )
    messages.append({"role": "user", "content": user_message(lines)})
    return messages


def first_sentence_block(text: str) -> str:
    """The answer up to its first blank line, on one line: models often ramble on after."""
    return " ".join(text.strip().split("\n\n")[0].split())


class CausalLMDescriber:
    """A transformers causal LM, loaded with ml.arc's loader (GGUF dequantised on the CPU)."""

    def __init__(self, config: DescriberConfig):
        from ml.arc.configs import ModelSettings
        from ml.arc.modeling import load_model

        self.config = config
        self.device = choose_device(config.device)
        settings = ModelSettings(
            name_or_path=config.model,
            gguf_file=config.gguf_file,
            revision=config.revision,
            gradient_checkpointing=False,
        )
        self.model, self.tokenizer = load_model(settings, self.device)
        self.model.eval()
        # Left padding: a batch's prompts end where generation starts.
        self.tokenizer.padding_side = "left"

    def _prompt(self, lines: list[str]) -> str:
        messages = chat_messages(lines)
        if self.tokenizer.chat_template is None:
            # A base model (phi-2) has no chat format: the turns as plain text, each answer
            # after a cue, ending on the cue for this one.
            parts = [
                m["content"] if m["role"] != "assistant" else f"Description: {m['content']}"
                for m in messages
            ]
            return "\n\n".join(parts) + "\nDescription:"
        return str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    def describe(self, facts: list[list[str]]) -> list[str]:
        import torch

        out: list[str] = []
        for start in range(0, len(facts), self.config.batch_size):
            prompts = [
                self._prompt(lines) for lines in facts[start : start + self.config.batch_size]
            ]
            batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
            with torch.no_grad():
                generated = self.model.generate(
                    **batch,
                    max_new_tokens=self.config.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            out.extend(first_sentence_block(text) for text in texts)
        return out


class ChatAPIDescriber:
    """A model behind an OpenAI-compatible chat-completions API; its key is a secret."""

    def __init__(self, config: DescriberConfig):
        self.config = config
        key = os.environ.get(config.api_key_secret)
        if not key:
            name = config.api_key_secret
            raise MissingSecretError(
                f"describer model {config.model!r} is only reachable through an API and needs"
                f" its key in the secret {name}, which this job was not given: set it with"
                f" 'baton secrets set {name}' and submit the experiment with"
                f' "secrets": ["{name}"]'
            )
        self.key = key

    def _complete(self, client: Any, lines: list[str]) -> str:
        reply = client.post(
            f"{self.config.api_base.rstrip('/')}/chat/completions",
            headers={"Authorization": f"Bearer {self.key}"},
            json={
                "model": self.config.model,
                "temperature": 0,
                "max_tokens": self.config.max_new_tokens,
                "messages": chat_messages(lines),
            },
        )
        reply.raise_for_status()
        return first_sentence_block(reply.json()["choices"][0]["message"]["content"])

    def describe(self, facts: list[list[str]]) -> list[str]:
        import httpx

        with httpx.Client(timeout=120) as client:
            return [self._complete(client, lines) for lines in facts]


def make_describer(config: DescriberConfig) -> Describer | None:
    """The configured language model; None for the template (it is always computed)."""
    if config.kind == "template":
        return None
    if config.kind == "openai":
        return ChatAPIDescriber(config)
    return CausalLMDescriber(config)
