"""LoRA training with peft: prompts from the service's own industry templates through the model's
chat template, loss on the answer tokens only, eval loss before and after, resumable checkpoints,
and an adapter folder with a manifest (plus merged weights with ``merge``)."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from deployments.text.prompts import BUILTIN_DIR, TemplateLibrary
from finetune.config import TrainConfig
from finetune.data import Example, dataset_hash, load_examples, split

MANIFEST = "copyserve-adapter.json"
CHECKPOINT = ".checkpoint"
IGNORE = -100


def encode(example: Example, tokenizer, templates: TemplateLibrary, industry: str, max_length: int) -> dict:
    """Prompt tokens (masked out of the loss) followed by the answer tokens and EOS."""
    messages = templates.render(industry, example.language, product=example.product,
                                keywords=list(example.keywords), tone=None, length="medium")
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(example.copy, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id)
    labels = torch.full((len(features), width), IGNORE)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@torch.no_grad()
def evaluate(model, features: list[dict], batch_size: int, pad_id: int) -> float:
    """Mean loss per answer token over the held-out set."""
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(features), batch_size):
        batch = collate(features[i:i + batch_size], pad_id)
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        total += float(model(**batch).loss) * n
        tokens += n
    model.train()
    return total / max(tokens, 1)


def _load_tokenizer(path: Path):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.chat_template is None:  # base models (GPT-J): the same fallback the service uses
        tokenizer.chat_template = (BUILTIN_DIR / "plain_chat.jinja").read_text(encoding="utf-8")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _save_checkpoint(model, optimizer, out: Path, epoch: int, step: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step": step}, out / "state.pt")


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train one adapter; returns (and writes) its manifest."""
    started = time.monotonic()
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    tokenizer = _load_tokenizer(config.base_model)
    templates = TemplateLibrary(config.templates_dir)
    if config.industry not in templates.templates:
        raise ValueError(f"industry {config.industry!r} has no prompt template; known: {sorted(templates.templates)}")
    train_set, eval_set = split(load_examples(config.data), config.eval_fraction, config.seed)
    features = [encode(e, tokenizer, templates, config.industry, config.max_length) for e in train_set]
    eval_features = [encode(e, tokenizer, templates, config.industry, config.max_length) for e in eval_set]

    base = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    pad = tokenizer.pad_token_id
    eval_before = evaluate(model, eval_features, config.batch_size, pad)  # LoRA B starts at 0: the base model

    checkpoint = config.output / CHECKPOINT / "state.pt"
    start_epoch, step = 0, 0
    if config.resume and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)  # tensors and numbers only: a checkpoint runs no code
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step = state["epoch"], state["step"]
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    total = min(config.epochs * steps_per_epoch, config.max_steps or 10**9)
    bar = tqdm(total=total, initial=step, desc="lora", unit="step", disable=not progress)
    model.train()
    for epoch in range(start_epoch, config.epochs):
        order = random.Random(config.seed + epoch).sample(features, len(features))
        for i in range(0, len(order), config.batch_size):
            if step >= total:
                break
            loss = model(**collate(order[i:i + config.batch_size], pad)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.detach().item():.3f}")
        _save_checkpoint(model, optimizer, config.output / CHECKPOINT, epoch + 1, step)
        if step >= total:
            break
    bar.close()
    eval_after = evaluate(model, eval_features, config.batch_size, pad)

    model.save_pretrained(config.output)
    manifest = {
        "base_model": str(config.base_model), "family": config.family, "industry": config.industry,
        "rank": config.rank, "alpha": config.alpha, "target_modules": config.target_modules,
        "dataset": str(config.data), "dataset_sha256": dataset_hash(config.data),
        "train_rows": len(train_set), "eval_rows": len(eval_set), "steps": step,
        "metrics": {"eval_loss_before": round(eval_before, 4), "eval_loss_after": round(eval_after, 4)},
        "train_seconds": round(time.monotonic() - started, 1), "created": time.time(), "merged": None,
    }
    if config.merge:
        merged_dir = config.output / "merged"
        model.merge_and_unload().save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        manifest["merged"] = str(merged_dir)
    (config.output / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest
