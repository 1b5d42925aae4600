"""Training configuration for LoRA adapters, validated with pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Attention projections per family: the modules vLLM can serve LoRA on for Llama/Qwen3, and the
# GPT-J equivalents (GPT-J adapters are served merged: vLLM has no LoRA kernels for it).
TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj"],
}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: Path = Field(..., description="Folder of the base model (HF format).")
    family: Literal["llama", "qwen3", "gptj"]
    data: Path = Field(..., description="CSV or JSONL with product_name, keywords, copy_text.")
    output: Path = Field(..., description="Folder for the adapter, its manifest and checkpoints.")
    industry: str = Field(..., description="Whose prompt template builds the training prompts.")
    rank: int = Field(8, ge=1, le=256)
    alpha: int = Field(16, ge=1, le=1024)
    dropout: float = Field(0.05, ge=0, lt=1)
    learning_rate: float = Field(3e-4, gt=0, le=1)
    epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(4, ge=1, le=256)
    max_length: int = Field(384, ge=32, le=8192, description="Prompt + answer tokens; longer rows are cut.")
    eval_fraction: float = Field(0.15, gt=0, lt=0.9, description="Held-out share for eval loss.")
    max_steps: int | None = Field(None, ge=1, description="Stop early (quick runs and tests).")
    seed: int = 0
    merge: bool = Field(False, description="Also export merged full weights (how GPT-J adapters are served).")
    resume: bool = Field(False, description="Continue from the last checkpoint in `output`.")
    templates_dir: Path | None = None

    @model_validator(mode="after")
    def _check_paths(self) -> TrainConfig:
        if not (self.base_model / "config.json").is_file():
            raise ValueError(f"base_model: no config.json in {self.base_model}")
        if not self.data.is_file():
            raise ValueError(f"data: file not found: {self.data}")
        return self

    @property
    def target_modules(self) -> list[str]:
        return TARGET_MODULES[self.family]
