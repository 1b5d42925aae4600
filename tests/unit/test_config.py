"""Config schema: the shipped files load, bad files fail with the field path, sources resolve."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from contracts.config import ConfigError, RedisConfig, check_local_sources, load_config, models_home, parse_config

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "models": [
        {"name": "alpha", "family": "llama", "source": "org/alpha"},
        {"name": "beta", "family": "gptj", "source": "org/beta"},
    ],
    "routes": [
        {"industry": "ecommerce", "aliases": ["电商"], "model": "alpha"},
        {"industry": "finance", "model": "beta"},
    ],
}


def config(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def parse_error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


@pytest.mark.parametrize("path", ["configs/local.yaml", "configs/production.yaml", "tests/configs/integration.yaml"])
def test_shipped_configs_load(path):
    cfg = load_config(ROOT / path)
    names = {m.name for m in cfg.models}
    assert cfg.routes and all(r.model in names for r in cfg.routes)
    assert {"ecommerce", "finance", "education"} <= {r.industry for r in cfg.routes}


def test_production_config_values():
    cfg = load_config(ROOT / "configs/production.yaml")
    qwen = cfg.model("qwen3-4b-instruct")
    assert qwen.source == "Qwen/Qwen3-4B-Instruct-2507"
    assert qwen.engine.enable_lora and qwen.engine.max_model_len == 8192
    assert cfg.model("gpt-j-6b").family == "gptj"


def test_unknown_nested_key_names_its_path():
    data = config()
    data["models"][1]["engine"] = {"max_model_lenn": 4096}
    message = parse_error(data)
    assert "models.1.engine.max_model_lenn" in message
    assert "Extra inputs are not permitted" in message


def test_route_to_unknown_model_lists_known_models():
    data = config()
    data["routes"][1]["model"] = "gamma"
    message = parse_error(data)
    assert "routes.1.model" in message and "'gamma'" in message
    assert "known models: alpha, beta" in message


def test_duplicate_model_names():
    data = config()
    data["models"][1]["name"] = "alpha"
    data["routes"][1]["model"] = "alpha"
    message = parse_error(data)
    assert "models: duplicate names ['alpha']" in message


def test_alias_shared_by_two_routes():
    data = config()
    data["routes"][1]["aliases"] = ["E-Commerce"]
    data["routes"][0]["aliases"] = ["e-commerce"]
    message = parse_error(data)
    assert "'E-Commerce'" in message
    assert "'ecommerce'" in message and "'finance'" in message


def test_enable_lora_on_gptj_rejected():
    data = config()
    data["models"][1]["engine"] = {"enable_lora": True}
    message = parse_error(data)
    assert "models.1" in message and "engine.enable_lora" in message and "GPT-J" in message


def test_default_max_tokens_must_leave_room_for_prompt():
    data = config()
    data["models"][0].update(default_max_tokens=512, engine={"max_model_len": 512})
    message = parse_error(data)
    assert "models.0" in message
    assert "default_max_tokens (512) must be below engine.max_model_len (512)" in message
    data["models"][0]["default_max_tokens"] = 511
    assert parse_config(data).models[0].default_max_tokens == 511


def test_negative_max_model_len():
    data = config()
    data["models"][0]["engine"] = {"max_model_len": -1}
    message = parse_error(data)
    assert "models.0.engine.max_model_len" in message and "greater than or equal to 64" in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_non_mapping_yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="top level must be a mapping") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_load_config_prefixes_file_name(tmp_path):
    data = config()
    data["server"] = {"port": 0}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "server.port" in str(info.value)


def test_embedded_source_resolves_under_copyserve_home(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSERVE_HOME", str(tmp_path / "home"))
    data = config()
    data["models"][0]["source"] = "embedded:tiny"
    cfg = parse_config(data)
    assert cfg.models[0].source == str(tmp_path / "home" / "models" / "tiny")
    assert models_home() == tmp_path / "home" / "models"


def test_relative_paths_resolve_against_config_folder(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    data = config()
    data["models"][0].update(source="./weights", tokenizer="../tok", chat_template="./chat.jinja")
    data["server"] = {"templates_dir": "./templates"}
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    cfg = load_config(path)
    m = cfg.models[0]
    assert m.source == str(folder / "weights")
    assert m.tokenizer == str(tmp_path / "tok")
    assert m.chat_template == str(folder / "chat.jinja")
    assert cfg.server.templates_dir == str(folder / "templates")


def test_hub_ids_pass_through(tmp_path):
    data = config()
    data["models"][0]["source"] = "Qwen/Qwen3-4B-Instruct-2507"
    cfg = parse_config(data, base_dir=tmp_path)
    assert cfg.models[0].source == "Qwen/Qwen3-4B-Instruct-2507"
    assert cfg.models[1].source == "org/beta"


def test_check_local_sources_hints_prepare_for_embedded(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSERVE_HOME", str(tmp_path))
    data = config()
    data["models"][1]["source"] = "embedded:missing"
    with pytest.raises(ConfigError) as info:
        check_local_sources(parse_config(data))
    message = str(info.value)
    assert message.startswith("models.1.source:")
    assert str(tmp_path / "models" / "missing") in message and "copyserve models prepare" in message


def test_check_local_sources_other_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSERVE_HOME", str(tmp_path / "home"))
    data = config()
    data["models"][0]["source"] = str(tmp_path / "elsewhere")
    with pytest.raises(ConfigError) as info:
        check_local_sources(parse_config(data))
    assert "does not exist" in str(info.value) and "prepare" not in str(info.value)
    (tmp_path / "elsewhere").mkdir()
    check_local_sources(parse_config(data))  # existing folder and a hub id: nothing to complain about


def test_autoscaling_is_validated():
    def with_scaling(**deployment):
        return config(models=[{**BASE["models"][0], "deployment": deployment}, BASE["models"][1]])

    ok = parse_config(with_scaling(autoscaling={"min_replicas": 1, "max_replicas": 3, "upscale_delay_s": 5}))
    assert ok.models[0].deployment.max_replicas == 3
    assert "min_replicas (4) is above max_replicas (2)" in parse_error(
        with_scaling(autoscaling={"min_replicas": 4, "max_replicas": 2}))
    assert "initial_replicas (5) must lie in" in parse_error(
        with_scaling(autoscaling={"max_replicas": 3, "initial_replicas": 5}))
    assert "num_replicas (fixed) or autoscaling, not both" in parse_error(
        with_scaling(num_replicas=2, autoscaling={"max_replicas": 3}))
    assert "target_ongoing_requests (100.0) is above max_ongoing_requests (8)" in parse_error(
        with_scaling(max_ongoing_requests=8, autoscaling={"max_replicas": 3, "target_ongoing_requests": 100}))
    assert "models.0.deployment.autoscaling.max_replicas" in parse_error(with_scaling(autoscaling={}))


def test_autoscaling_reaches_serve_options():
    from serve_app.builder import deployment_options

    opts = parse_config(config(models=[{**BASE["models"][0], "deployment": {
        "autoscaling": {"min_replicas": 1, "max_replicas": 3, "downscale_delay_s": 20},
        "graceful_shutdown_timeout_s": 90}}, BASE["models"][1]])).models[0].deployment
    serve_options = deployment_options(opts)
    assert "num_replicas" not in serve_options and serve_options["graceful_shutdown_timeout_s"] == 90
    assert serve_options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2,
                                                   "upscale_delay_s": 30, "downscale_delay_s": 20,
                                                   "look_back_period_s": 30}


@pytest.mark.parametrize("url,shown", [
    ("redis://:s3cret@redis.internal:6380/0", "redis://:***@redis.internal:6380/0"),
    ("rediss://app:s3cret@redis.internal/1", "rediss://app:***@redis.internal/1"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_redis_password_never_reaches_logs(url, shown):
    assert RedisConfig(url=url).safe_url == shown


def test_tool_parser_is_a_name_checked_by_the_engine_and_set_on_the_qwen3_models():
    # The name itself is checked against vLLM's registry when the replica starts (tests/unit/test_vllm_tools.py):
    # the config package does not import vLLM.
    assert parse_config(config()).models[0].tool_parser is None
    data = config()
    data["models"][0]["tool_parser"] = "hermes"
    assert parse_config(data).models[0].tool_parser == "hermes"
    data["models"][0]["tool_parser"] = "her mes"
    assert "models.0.tool_parser" in parse_error(data)
    for path in ("configs/production.yaml", "tests/configs/integration.yaml"):
        assert {m.name: m.tool_parser for m in load_config(ROOT / path).models if m.family == "qwen3"}
        assert all(m.tool_parser == "hermes" for m in load_config(ROOT / path).models if m.family == "qwen3")
