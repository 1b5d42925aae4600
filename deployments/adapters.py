"""The LoRA adapter registry, shared by every replica through Redis.

An adapter is validated when it is registered (files, base model, rank, weights) and gets a
version; registering the same name again bumps the version, and model servers load the new
version from the next request on (its vLLM id is derived from name and version).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deployments.state.store import RedisStore
from serve_app.config import ModelConfig
from serve_app.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MANIFEST = "copyserve-adapter.json"


@dataclass(frozen=True)
class AdapterRef:
    """What a model server needs to apply an adapter to one request."""

    name: str
    version: int
    path: str

    @property
    def tag(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def engine_id(self) -> int:
        """A stable positive id per name and version: every replica loads the same version under the same id."""
        return int(hashlib.sha1(self.tag.encode()).hexdigest()[:7], 16) + 1


@dataclass(frozen=True)
class Adapter:
    name: str
    base_model: str
    path: str
    version: int
    rank: int
    created: float
    manifest: dict

    @property
    def ref(self) -> AdapterRef:
        return AdapterRef(self.name, self.version, self.path)

    def public(self) -> dict:
        return asdict(self)


def _same_model(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/") or Path(a).name == Path(b).name


def validate_adapter(path: str, model: ModelConfig) -> dict:
    """Check an adapter folder against the model it is for; returns its adapter_config. 400 says why."""
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidRequestError(f"adapter path {path} is not a folder on the serving nodes", "path")
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidRequestError(f"{path} has no adapter_config.json: is it a peft LoRA adapter folder?", "path")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidRequestError(f"{config_file} is not valid JSON: {err}", "path") from None
    if not model.engine.enable_lora:
        why = " (vLLM has no LoRA kernels for GPT-J: serve it merged)" if model.family == "gptj" else ""
        raise InvalidRequestError(f"model {model.name} does not serve LoRA adapters{why}; set engine.enable_lora",
                                  "base_model")
    base = str(config.get("base_model_name_or_path") or "")
    if base and not _same_model(base, model.source):
        raise InvalidRequestError(f"adapter was trained on {base}, but model {model.name} is {model.source}",
                                  "base_model")
    rank = int(config.get("r", 0))
    if not 0 < rank <= model.engine.max_lora_rank:
        raise InvalidRequestError(f"adapter rank {rank} is outside 1..{model.engine.max_lora_rank} "
                                  f"(engine.max_lora_rank of {model.name})", "path")
    _check_weights(folder)
    return config


def _check_weights(folder: Path) -> None:
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise InvalidRequestError(f"{folder} has no {' or '.join(WEIGHT_FILES)}", "path")
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                names = list(f.keys())
                for name in names:
                    f.get_slice(name)  # reads the header entry: a truncated file fails here
        except (SafetensorError, OSError, ValueError) as err:
            raise InvalidRequestError(f"{weights} cannot be read: {err}", "path") from None
        if not any("lora_" in n for n in names):
            raise InvalidRequestError(f"{weights} holds no LoRA weights", "path")


class AdapterRegistry:
    """``name -> Adapter`` in one Redis hash; reads fail open to an empty registry."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("adapters")

    async def get(self, name: str) -> Adapter | None:
        raw = await self.store.call(lambda r: r.hget(self.key, name))
        return Adapter(**json.loads(raw)) if raw else None

    async def require(self, name: str) -> Adapter:
        adapter = await self.get(name)
        if adapter is None:
            raise NotFoundError(f"adapter {name!r} is not registered (see GET /v1/adapters)", "adapter")
        return adapter

    async def list(self) -> list[Adapter]:
        rows = await self.store.call(lambda r: r.hvals(self.key), default=[])
        return sorted((Adapter(**json.loads(v)) for v in rows), key=lambda a: a.name)

    async def register(self, name: str, model: ModelConfig, path: str) -> Adapter:
        config = validate_adapter(path, model)
        manifest_file = Path(path) / MANIFEST
        manifest = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.is_file() else {}
        # Versions only grow (atomic counter, kept after delete): a cache entry or a loaded engine
        # adapter of an older version can never be mistaken for the new one.
        version = await self.store.call(lambda r: r.hincrby(self.store.key("adapter-versions"), name, 1))
        if version is None:
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable; nothing was registered")
        adapter = Adapter(name=name, base_model=model.name, path=str(Path(path).resolve()), version=int(version),
                          rank=int(config["r"]), created=time.time(), manifest=manifest)
        stored = await self.store.call(lambda r: r.hset(self.key, name, json.dumps(adapter.public())), default=None)
        if stored is None:
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable; nothing was registered")
        return adapter

    async def delete(self, name: str) -> bool:
        removed = await self.store.call(lambda r: r.hdel(self.key, name), default=None)
        if removed is None:
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable")
        return bool(removed)
