"""Merged adapters (GPT-J): registration checks the folder against the base model, and replicas
learn their weights from their environment."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from contracts.config import ModelConfig
from contracts.errors import InvalidRequestError
from deployments.releases.adapters import AdapterRef, serves_merged, validate_merged
from deployments.releases.merged_weights import WEIGHTS_ENV, weights_env, weights_from_env, with_merged_weights

GPTJ = {"model_type": "gptj", "vocab_size": 256, "n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 16}


def model_folder(path, config: dict, weights: bool = True):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    if weights:
        save_file({"w": torch.zeros(2, 2)}, str(path / "model.safetensors"))
    return path


@pytest.fixture
def base(tmp_path):
    folder = model_folder(tmp_path / "base", GPTJ)
    return ModelConfig(name="gptj", family="gptj", source=str(folder))


def refused(path, model) -> str:
    with pytest.raises(InvalidRequestError) as info:
        validate_merged(str(path), model)
    return info.value.message


def test_finetune_output_resolves_to_its_merged_folder(tmp_path, base):
    out = tmp_path / "adapter"
    model_folder(out / "merged", GPTJ)
    (out / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert validate_merged(str(out), base) == (out / "merged").resolve()
    assert validate_merged(str(out / "merged"), base) == (out / "merged").resolve()


def test_bad_merged_folders_say_why(tmp_path, base):
    lora_only = tmp_path / "lora"
    lora_only.mkdir()
    (lora_only / "adapter_config.json").write_text("{}")
    assert "finetune --merge" in refused(lora_only, base)
    assert "not a folder" in refused(tmp_path / "missing", base)
    other = model_folder(tmp_path / "wide", {**GPTJ, "n_embd": 128})
    assert "n_embd is 128, the base model has 64" in refused(other, base)
    llama = model_folder(tmp_path / "llama", {**GPTJ, "model_type": "llama"})
    assert "model_type" in refused(llama, base)
    empty = model_folder(tmp_path / "empty", GPTJ, weights=False)
    assert "no .safetensors" in refused(empty, base)
    broken = model_folder(tmp_path / "broken", GPTJ)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:20])
    assert "cannot be read" in refused(broken, base)
    bad_json = model_folder(tmp_path / "badjson", GPTJ)
    (bad_json / "config.json").write_text("{not json")
    assert "config.json cannot be read" in refused(bad_json, base)


def test_only_models_without_lora_take_merged_adapters():
    assert serves_merged(ModelConfig(name="g", family="gptj", source="org/g"))
    assert not serves_merged(ModelConfig(name="q", family="qwen3", source="org/q", engine={"enable_lora": True}))


def test_replica_weights_round_trip_through_the_environment(monkeypatch, base):
    ref = AdapterRef("tutor", 3, "/models/tutor/merged")
    env = weights_env(ref)
    monkeypatch.setenv(WEIGHTS_ENV, env[WEIGHTS_ENV])
    assert weights_from_env() == ref
    served = with_merged_weights(base, ref)
    assert served.source == ref.path and served.tokenizer == base.source  # base tokenizer, merged weights
    assert with_merged_weights(base, None) is base
    digested = AdapterRef("tutor", 4, "/models/tutor/v4/merged", digest="ab" * 32)  # versions since digests
    monkeypatch.setenv(WEIGHTS_ENV, weights_env(digested)[WEIGHTS_ENV])
    assert weights_from_env() == digested and weights_from_env().engine_name == "tutor@v4-abababababab"
    assert weights_env(None) == {WEIGHTS_ENV: None}
    monkeypatch.delenv(WEIGHTS_ENV)
    assert weights_from_env() is None
