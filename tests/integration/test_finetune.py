"""Train real LoRA adapters with peft on the embedded tiny models (a few steps, real code paths)."""

import json

from contracts.config import models_home
from finetune.config import TrainConfig
from finetune.embedded_models import prepare
from finetune.train import MANIFEST, train
from tests.integration.helpers import write_dataset

ROWS = [(f"Travel mug {i}", "leak-proof|keeps coffee hot",
         f"Coffee stays hot for hours in travel mug {i}. Leak-proof lid, one-hand sip, fits every cup holder. "
         "Grab yours today.") for i in range(12)]


def dataset(tmp_path):
    return write_dataset(tmp_path / "mugs.csv", ROWS)


def test_adapter_training_lowers_eval_loss_and_writes_manifest(tmp_path):
    base = prepare(models_home(), ("tiny-qwen3",))["tiny-qwen3"]
    out = tmp_path / "adapter"
    manifest = train(TrainConfig(base_model=base, family="qwen3", data=dataset(tmp_path), output=out,
                                 industry="ecommerce", rank=4, epochs=3, batch_size=4, learning_rate=5e-3,
                                 max_length=160), progress=False)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    written = json.loads((out / MANIFEST).read_text())
    assert written == manifest and written["family"] == "qwen3" and len(written["dataset_sha256"]) == 64
    assert manifest["metrics"]["eval_loss_after"] < manifest["metrics"]["eval_loss_before"]


def test_resume_continues_from_checkpoint(tmp_path):
    base = prepare(models_home(), ("tiny-qwen3",))["tiny-qwen3"]
    common = dict(base_model=base, family="qwen3", data=dataset(tmp_path), output=tmp_path / "a",
                  industry="ecommerce", rank=4, epochs=2, batch_size=4, max_length=160)
    first = train(TrainConfig(**common, max_steps=3), progress=False)
    resumed = train(TrainConfig(**common, resume=True), progress=False)
    assert first["steps"] == 3 and resumed["steps"] == 6  # 3 steps per epoch; the second run did epoch 2 only


def test_gptj_adapter_merges_into_full_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    base = prepare(models_home(), ("tiny-gptj",))["tiny-gptj"]
    manifest = train(TrainConfig(base_model=base, family="gptj", data=dataset(tmp_path), output=tmp_path / "g",
                                 industry="education", rank=4, epochs=1, batch_size=4, max_length=160,
                                 merge=True), progress=False)
    merged = AutoModelForCausalLM.from_pretrained(manifest["merged"])
    assert merged.config.model_type == "gptj"
    assert not any("lora" in name for name, _ in merged.named_parameters())
