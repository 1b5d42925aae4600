"""LoRA and merged adapters: what a version is, how a folder is checked and named by its content.

An adapter is validated when it is registered (files, base model, rank, weights) and named by a digest
of its content (``content_digest``): registering the same content again under a name changes nothing,
new content gets the name's next version. Requests name a version through ``name``, ``name@<alias>``,
``name@vN`` or ``name@<digest prefix>`` (``parse_spec``); the registry in Redis is
``deployments/state/adapter_releases.py``. Registration reads only folders under ``server.adapter_roots``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.config import ModelConfig
from contracts.errors import InvalidRequestError

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MANIFEST = "copyserve-adapter.json"
# Config keys that must agree for merged weights to fit the base model's engine settings.
SHAPE_KEYS = ("model_type", "vocab_size", "n_embd", "hidden_size", "n_layer", "num_hidden_layers", "n_head",
              "num_attention_heads", "rotary_dim")
NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,62}"
# What a request may name: an adapter, optionally with @alias, @vN or @<digest prefix> (see parse_spec).
SPEC_PATTERN = rf"^{NAME_PATTERN}(@[a-z0-9-]{{1,64}})?$"
ALIAS = re.compile(r"[a-z][a-z0-9-]{0,31}")
# vN, or a bare number short enough not to read as a digest prefix (8+ hex digits).
VERSION = re.compile(r"v([1-9][0-9]{0,8})|([1-9][0-9]{0,6})")
DIGEST_PREFIX = re.compile(r"[0-9a-f]{8,64}")
STABLE = "stable"  # the alias a bare name means
DIGEST_CHUNK = 1 << 20


@dataclass(frozen=True)
class AdapterRef:
    """What a model server needs to apply an adapter to one request."""

    name: str
    version: int
    path: str
    lora_id: int = 0  # from the registry's counter; 0 for records written before it existed
    digest: str = ""  # sha256 of the content; "" for records written before it existed

    @property
    def tag(self) -> str:
        """``name@vN``: what responses, usage and metrics say served a request."""
        return f"{self.name}@v{self.version}"

    @property
    def engine_name(self) -> str:
        """The LoRA name engines load this version under and cache keys carry: ``name@vN-<digest12>``.
        vLLM keys its prefix cache by LoRA name and path, so two versions must never share a name."""
        return f"{self.tag}-{self.digest[:12]}" if self.digest else self.tag

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
    digest: str = ""

    @property
    def ref(self) -> AdapterRef:
        return AdapterRef(self.name, self.version, self.path, self.lora_id, self.digest)

    def public(self, admin: bool = True) -> dict:
        """The record; a user key sees what it can use, not where the files are or how they were made."""
        record = asdict(self)
        if not admin:
            for private in ("path", "manifest", "lora_id"):
                record.pop(private)
        return record


@dataclass(frozen=True)
class Selector:
    """A version as a request names it: ``kind`` alias, version or digest, ``value`` what follows the @."""

    name: str
    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}@{'v' if self.kind == 'version' else ''}{self.value}"


def _version_selector(text: str) -> Selector | None:
    if match := VERSION.fullmatch(text):
        return Selector("", "version", str(int(match.group(1) or match.group(2))))
    return Selector("", "digest", text) if DIGEST_PREFIX.fullmatch(text) else None


def parse_version(text: str | int, field: str = "version") -> Selector:
    """``3``, ``"v3"`` or a digest prefix (8+ hex digits) as a selector of a version (name left empty)."""
    text = text if isinstance(text, str) else f"v{text}"  # a JSON number is a version number, however long
    found = _version_selector(text.strip().lower())
    if found is None:
        raise InvalidRequestError(f"{text!r} names no version: give a number (3 or v3) or at least 8 hex digits "
                                  "of a version's digest", field)
    return found


def parse_spec(spec: str, field: str = "adapter") -> Selector:
    """``name`` (its stable alias), ``name@<alias>``, ``name@vN`` or ``name@<digest prefix of 8+ hex>``."""
    name, at, rest = spec.strip().partition("@")
    if not re.fullmatch(NAME_PATTERN, name) or (at and not rest):
        raise InvalidRequestError(f"{spec!r} is not an adapter: give name, name@alias, name@vN or "
                                  "name@<digest prefix>", field)
    if not at:
        return Selector(name, "alias", STABLE)
    if found := _version_selector(rest):
        return Selector(name, found.kind, found.value)
    if ALIAS.fullmatch(rest):
        return Selector(name, "alias", rest)
    raise InvalidRequestError(f"{spec!r}: after @ give an alias ([a-z][a-z0-9-]{{0,31}}), vN or at least 8 hex "
                              "digits of a version's digest", field)


def check_alias(alias: str, field: str = "alias") -> str:
    """An alias name: ``[a-z][a-z0-9-]{0,31}``, and not one that reads as a version or a digest prefix."""
    if not ALIAS.fullmatch(alias):
        raise InvalidRequestError(f"alias {alias!r} must match [a-z][a-z0-9-]{{0,31}}", field)
    if re.fullmatch(r"v[0-9]+", alias) or DIGEST_PREFIX.fullmatch(alias):
        raise InvalidRequestError(f"alias {alias!r} reads as a version or a digest prefix: choose another name",
                                  field)
    return alias


def content_files(folder: Path, kind: str) -> list[Path]:
    """What a version's content is: adapter_config.json and the weights of a LoRA folder; config.json and the
    safetensors of a merged one."""
    if kind == "merged":
        return [folder / "config.json", *sorted(folder.glob("*.safetensors"))]
    return [folder / "adapter_config.json", *(folder / f for f in WEIGHT_FILES if (folder / f).is_file())]


def content_digest(folder: Path, files: list[Path]) -> str:
    """sha256 (hex) over each file's name relative to ``folder``, its size and its bytes, names sorted and the
    bytes streamed in chunks: the same content has the same digest wherever its folder is."""
    digest = hashlib.sha256()
    for name in sorted(f.relative_to(folder).as_posix() for f in files):
        file = folder / name
        try:
            with file.open("rb") as stream:
                digest.update(f"{name}\0{file.stat().st_size}\0".encode())
                while chunk := stream.read(DIGEST_CHUNK):
                    digest.update(chunk)
        except OSError as err:
            raise InvalidRequestError(f"{file} cannot be read: {err}", "path") from None
    return digest.hexdigest()


def inspect_adapter(name: str, model: ModelConfig, path: str, roots: list[str]) -> Adapter:
    """A folder checked for ``model`` and named by its content: the record to register (version 0 until the
    registry gives it one). Reads every weight byte: run it off the event loop."""
    folder = inside_roots(path, roots)
    if serves_merged(model):
        kind, served = "merged", validate_merged(str(folder), model)
        config_file = folder / "adapter_config.json"
        rank = _rank(_read_json(config_file), config_file) if config_file.is_file() else 0
    else:
        kind, served = "lora", folder
        rank = _rank(validate_adapter(str(folder), model), folder / "adapter_config.json")
    manifest = _read_json(folder / MANIFEST) if (folder / MANIFEST).is_file() else {}
    return Adapter(name=name, base_model=model.name, path=str(served), version=0, rank=rank, created=time.time(),
                   manifest=manifest, kind=kind, digest=content_digest(served, content_files(served, kind)))


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
