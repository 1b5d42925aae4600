"""The LoRA adapter registry, shared by every replica through Redis.

An adapter is validated when it is registered (files, base model, rank, weights) and gets a
version; registering the same name again bumps the version, and model servers load the new
version from the next request on. Each registration also gets a vLLM LoRA id from a counter that
only grows, so two versions can never share an id (vLLM would serve whichever it loaded first).
Registration reads only folders under ``server.adapter_roots``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.config import ModelConfig
from contracts.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from deployments.state.store import RedisStore

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MANIFEST = "copyserve-adapter.json"
# Config keys that must agree for merged weights to fit the base model's engine settings.
SHAPE_KEYS = ("model_type", "vocab_size", "n_embd", "hidden_size", "n_layer", "num_hidden_layers", "n_head",
              "num_attention_heads", "rotary_dim")


@dataclass(frozen=True)
class AdapterRef:
    """What a model server needs to apply an adapter to one request."""

    name: str
    version: int
    path: str
    lora_id: int = 0  # from the registry's counter; 0 for records written before it existed

    @property
    def tag(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def engine_id(self) -> int:
        """The id every replica loads this version under: unique per registration."""
        return self.lora_id or int(hashlib.sha1(self.tag.encode()).hexdigest()[:7], 16) + 1


@dataclass(frozen=True)
class Adapter:
    name: str
    base_model: str
    path: str
    version: int
    rank: int
    created: float
    manifest: dict
    kind: str = "lora"  # "lora": applied per request; "merged": served by activating it on the model
    lora_id: int = 0

    @property
    def ref(self) -> AdapterRef:
        return AdapterRef(self.name, self.version, self.path, self.lora_id)

    def public(self, admin: bool = True) -> dict:
        """The record; a user key sees what it can use, not where the files are or how they were made."""
        record = asdict(self)
        if not admin:
            for private in ("path", "manifest", "lora_id"):
                record.pop(private)
        return record


def serves_merged(model: ModelConfig) -> bool:
    """Models without LoRA in their engine (GPT-J) take adapters merged into the weights."""
    return not model.engine.enable_lora


def _same_model(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/") or Path(a).name == Path(b).name


def inside_roots(path: str, roots: list[str]) -> Path:
    """The resolved folder when ``path`` is inside one of ``roots`` (links and ``..`` resolved first).

    Outside them the answer says nothing about the path (not whether it exists): registration must not
    become a way to probe the serving nodes' file system."""
    if not Path(path).is_absolute():
        raise InvalidRequestError(f"adapter path {path!r} must be absolute (the serving nodes' working folder "
                                  "is not yours)", "path")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(Path(root).resolve()) for root in roots):
        raise InvalidRequestError(f"adapter paths must be inside the configured adapter folders "
                                  f"(server.adapter_roots: {', '.join(roots)}); {path} is not", "path")
    return resolved


def _rank(config: dict, file: Path) -> int:
    try:
        return int(config.get("r", 0))
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{file}: r (the LoRA rank) must be an integer, not {config.get('r')!r}",
                                  "path") from None


def validate_adapter(path: str, model: ModelConfig) -> dict:
    """Check an adapter folder against the model it is for; returns its adapter_config. 400 says why."""
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidRequestError(f"adapter path {path} is not a folder on the serving nodes", "path")
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidRequestError(f"{path} has no adapter_config.json: is it a peft LoRA adapter folder?", "path")
    config = _read_json(config_file)
    base = str(config.get("base_model_name_or_path") or "")
    if base and not _same_model(base, model.source):
        raise InvalidRequestError(f"adapter was trained on {base}, but model {model.name} is {model.source}",
                                  "base_model")
    rank = _rank(config, config_file)
    if not 0 < rank <= model.engine.max_lora_rank:
        raise InvalidRequestError(f"adapter rank {rank} is outside 1..{model.engine.max_lora_rank} "
                                  f"(engine.max_lora_rank of {model.name})", "path")
    _check_weights(folder)
    return config


def _read_json(file: Path) -> dict:
    """A JSON object from a file of the adapter folder; 400 when it is unreadable or not an object."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidRequestError(f"{file} cannot be read: {err}", "path") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{file} must hold a JSON object", "path")
    return data


def validate_merged(path: str, model: ModelConfig) -> Path:
    """An adapter folder with ``merged/`` (``finetune --merge``) or a merged model folder → that folder.

    Checked against the base model: same architecture and shapes, readable safetensors weights.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidRequestError(f"adapter path {path} is not a folder on the serving nodes", "path")
    if (folder / "merged" / "config.json").is_file():
        folder = folder / "merged"
    if not (folder / "config.json").is_file():
        hint = " (train with `copyserve finetune --merge`)" if (folder / "adapter_config.json").is_file() else ""
        raise InvalidRequestError(f"model {model.name} serves adapters merged into its weights, and {path} holds no "
                                  f"merged weights: no config.json there or in {path}/merged{hint}", "path")
    merged = _read_json(folder / "config.json")
    base_config = Path(model.source) / "config.json"
    if base_config.is_file():
        base = _read_json(base_config)
        for key in SHAPE_KEYS:
            if key in base and merged.get(key) != base[key]:
                raise InvalidRequestError(f"merged weights in {folder} do not fit model {model.name}: {key} is "
                                          f"{merged.get(key)!r}, the base model has {base[key]!r}", "base_model")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise InvalidRequestError(f"{folder} has no .safetensors weights", "path")
    for file in weights:
        _safetensors_names(file)
    return folder.resolve()


def _safetensors_names(file: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            names = list(f.keys())
            for name in names:
                f.get_slice(name)  # reads the header entry: a truncated file fails here
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidRequestError(f"{file} cannot be read: {err}", "path") from None
    return names


def _check_weights(folder: Path) -> None:
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise InvalidRequestError(f"{folder} has no {' or '.join(WEIGHT_FILES)}", "path")
    if weights.suffix == ".safetensors":
        names = _safetensors_names(weights)
        if not any("lora_" in n for n in names):
            raise InvalidRequestError(f"{weights} holds no LoRA weights", "path")


# KEYS: version counters (hash), LoRA id counter, registry (hash). ARGV: name, the record as a JSON object
# without version and lora_id, which the script appends (text, so the JSON is stored exactly as written).
# Versions only grow (kept after a delete): a cache entry or loaded engine adapter of an older version can
# never be mistaken for the new one.
REGISTER = """
local version = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local lora_id = redis.call('INCR', KEYS[2])
local record = string.sub(ARGV[2], 1, -2) .. ', "version": ' .. version .. ', "lora_id": ' .. lora_id .. '}'
redis.call('HSET', KEYS[3], ARGV[1], record)
return {version, lora_id}
"""


class AdapterRegistry:
    """``name -> Adapter`` in one Redis hash; reads fail open to an empty registry."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("adapters")
        self._register = store.client.register_script(REGISTER) if store.client is not None else None

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

    async def register(self, name: str, model: ModelConfig, path: str, roots: list[str]) -> Adapter:
        folder = inside_roots(path, roots)
        if serves_merged(model):
            kind, served = "merged", validate_merged(str(folder), model)
            config_file = folder / "adapter_config.json"
            rank = _rank(_read_json(config_file), config_file) if config_file.is_file() else 0
        else:
            kind, served = "lora", folder
            rank = _rank(validate_adapter(str(folder), model), folder / "adapter_config.json")
        manifest = _read_json(folder / MANIFEST) if (folder / MANIFEST).is_file() else {}
        record = Adapter(name=name, base_model=model.name, path=str(served), version=0, rank=rank,
                         created=time.time(), manifest=manifest, kind=kind).public()
        fields = {k: v for k, v in record.items() if k not in ("version", "lora_id")}
        # One script: the next version, the next LoRA id and the record, so two registrations of one name
        # cannot interleave (each gets its own version; the registry keeps the newer).
        result = await self.store.call(lambda r: self._register(
            keys=[self.store.key("adapter-versions"), self.store.key("adapter-lora-ids"), self.key],
            args=[name, json.dumps(fields)], client=r))
        if result is None:
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable; nothing was registered")
        version, lora_id = (int(v) for v in result)
        return Adapter(**{**record, "version": version, "lora_id": lora_id})

    async def delete(self, name: str) -> bool:
        removed = await self.store.call(lambda r: r.hdel(self.key, name), default=None)
        if removed is None:
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable")
        return bool(removed)
