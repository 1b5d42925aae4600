"""The ``copyserve`` command: serve, prepare embedded models, check a config, and a small client."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

from contracts.config import ConfigError, load_config, models_home

DEFAULT_CONFIG = Path("configs/local.yaml")


def _free_or_none(port: int) -> int | None:
    """The port if nothing listens on it, else None (Ray then picks one). A busy metrics port would
    otherwise stop Ray's node from starting, after a long timeout."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
            return port
        except OSError:
            print(f"  metrics port {port} is in use: Ray picks another (server.metrics_port sets it)", flush=True)
            return None


def _serve(args: argparse.Namespace) -> int:
    from serve_app.worker_setup import keep_data_libraries_out, serving_runtime_env

    keep_data_libraries_out()  # this process only deploys and waits, as the job's workers only serve
    import ray
    from ray import serve

    from serve_app import serve_control
    from serve_app.builder import local_ray_env, validate_for_serving
    from serve_app.serve_config import build_serve_config

    config = load_config(args.config)
    server = config.server.model_copy(update={k: v for k, v in {"host": args.host, "port": args.port}.items() if v})
    config = config.model_copy(update={"server": server})
    validate_for_serving(config)  # model folders and templates, before Ray starts
    serve_config = build_serve_config(config)
    started = time.monotonic()
    print(f"starting Ray and {len(config.models)} model deployment(s) from {args.config} ...", flush=True)
    # No --address: a new local Ray, never one a past `ray start` left recorded in /tmp/ray.
    if not args.address:
        os.environ.update(local_ray_env(config))
    ray.init(address=args.address or "local", include_dashboard=False, logging_level="WARNING",
             runtime_env=serving_runtime_env(),
             _metrics_export_port=None if args.address else _free_or_none(server.metrics_port))
    serve.start(http_options={"host": server.host, "port": server.port,
                              "request_timeout_s": server.request_timeout_s})
    # From a Serve config, like `serve deploy`: a later change to one deployment rolls only its replicas.
    serve_control.deploy(serve_config)
    try:
        serve_control.wait_until_running(server.app_name, args.start_timeout,
                                         progress=lambda line: print(f"  {line}", flush=True))
    except serve_control.DeployError as err:
        print(f"copyserve: {err}", file=sys.stderr)
        serve.shutdown()
        ray.shutdown()
        return 1
    url = f"http://{server.host}:{server.port}{server.route_prefix.rstrip('/')}"
    print(f"copyserve is up in {time.monotonic() - started:.0f}s at {url}", flush=True)
    print(f"  studio: open {url}/ in a browser to write copy there")
    if not args.address:
        print(f"  metrics: http://127.0.0.1:{ray.nodes()[0]['MetricsExportPort']}/metrics "
              "(Prometheus: ray_copyserve_*, ray_serve_*, ray_vllm_*)")
    if config.auth.enabled:
        print("  auth: ON - create a key with `copyserve keys create --role admin` and send "
              "`Authorization: Bearer <key>`")
    else:
        print("  auth: OFF (auth.enabled: false in the config) - anyone who can reach this port can use it")
    print(f"  redis: {config.redis.safe_url if config.redis.enabled else 'disabled'}"
          f" (cache {'on' if config.cache.enabled else 'off'}, ttl {config.cache.ttl_s}s)")
    print(f"  try: curl -s {url}/v1/copy -H 'Content-Type: application/json' "
          """-d '{"industry": "ecommerce", "product": "insulated water bottle", "keywords": ["leak-proof"]}'""")
    print("press Ctrl-C to stop", flush=True)
    # SIGTERM (systemd, `kill`, background jobs that ignore SIGINT) shuts down as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("shutting down ...", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0


def _keys(args: argparse.Namespace) -> int:
    import asyncio

    from deployments.state.keys import KeyStore
    from deployments.state.store import RedisStore

    config = load_config(args.config)

    async def run() -> int:
        store = RedisStore(config.redis.model_copy(update={"timeout_s": 2.0}))
        keys = KeyStore(store)
        try:
            if args.action == "create":
                key, secret = await keys.create(args.role, args.name, args.requests_per_window,
                                                args.tokens_per_window)
                print(f"created {key.role} key {key.id} ({key.name or 'unnamed'}); the secret is shown only once:")
                print(secret)
            elif args.action == "list":
                listed = await keys.list()
                if listed is None:
                    raise ConnectionError(f"redis at {config.redis.safe_url} is unavailable")
                for k in listed:
                    state = "revoked" if k.revoked else "active"
                    print(f"{k.id}\t{k.role}\t{state}\t{time.strftime('%Y-%m-%d %H:%M', time.localtime(k.created))}"
                          f"\t{k.name}")
            else:
                revoked = await keys.revoke(args.key_id)
                if revoked is None:
                    raise ConnectionError(f"redis at {config.redis.safe_url} is unavailable")
                print(f"revoked {args.key_id}" if revoked else f"no key {args.key_id}")
                return 0 if revoked else 1
            return 0
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ConnectionError as err:
        print(f"copyserve: {err}", file=sys.stderr)
        return 1


def _models_prepare(args: argparse.Namespace) -> int:
    from finetune.embedded_models import ALL_MODELS, prepare

    names = tuple(args.only) if args.only else ALL_MODELS
    folders = prepare(Path(args.home) if args.home else models_home(), names, force=args.force)
    for name, folder in folders.items():
        print(f"{name}\t{folder}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from serve_app.builder import validate_for_serving

    config = load_config(args.config)
    validate_for_serving(config)
    print(f"{args.config}: ok ({len(config.models)} models, {len(config.routes)} routes)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    body = {"industry": args.industry, "product": args.product,
            "keywords": [k.strip() for k in args.keywords.split(",") if k.strip()] if args.keywords else [],
            "length": args.length, "stream": args.stream}
    for key in ("tone", "language", "temperature", "max_tokens", "seed"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    url = f"{args.url.rstrip('/')}/v1/copy"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(timeout=args.timeout, headers=headers) as client:
        if not args.stream:
            response = client.post(url, json=body)
            print(json.dumps(response.json(), ensure_ascii=False, indent=2))
            return 0 if response.is_success else 1
        with client.stream("POST", url, json=body) as response:
            if not response.is_success:
                print(response.read().decode(), file=sys.stderr)
                return 1
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "delta":
                        print(event["text"], end="", flush=True)
                    else:
                        print(f"\n\n{json.dumps({k: v for k, v in event.items() if k != 'texts'}, ensure_ascii=False)}")
    return 0



def positive_int(text: str) -> int:
    """A limit given on the command line: a whole number of at least 1 (as the HTTP API's key schema)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value

def parser() -> argparse.ArgumentParser:
    from serve_app import adapters_cli, batch_cli
    from serve_app.cluster_cli import add_commands

    p = argparse.ArgumentParser(prog="copyserve", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    add_commands(sub)
    batch_cli.add_commands(sub)
    adapters_cli.add_commands(sub)

    s = sub.add_parser("serve", help="start a local Ray, deploy the app, serve until Ctrl-C")
    s.add_argument("--config", default=DEFAULT_CONFIG, type=Path)
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--address", help="Ray cluster address, or `auto` for the one `ray start` began "
                   "(default: start a local Ray)")
    s.add_argument("--start-timeout", type=float, default=900, help="seconds to wait for every replica to start")
    s.set_defaults(func=_serve)

    m = sub.add_parser("models", help="embedded models").add_subparsers(dest="action", required=True)
    mp = m.add_parser("prepare", help="convert SmolLM2 from its GGUF and build the tiny test models")
    mp.add_argument("--home", help="folder for the models (default: $COPYSERVE_HOME/models)")
    mp.add_argument("--only", nargs="+", choices=["smollm2-135m-instruct", "tiny-gptj", "tiny-qwen3"])
    mp.add_argument("--force", action="store_true", help="rebuild even if present")
    mp.set_defaults(func=_models_prepare)

    k = sub.add_parser("keys", help="API keys (stored hashed in the config's Redis)")
    k.add_argument("--config", default=DEFAULT_CONFIG, type=Path)
    ka = k.add_subparsers(dest="action", required=True)
    kc = ka.add_parser("create", help="create a key and print its secret once")
    kc.add_argument("--role", choices=["user", "admin"], default="user")
    kc.add_argument("--name", default="")
    kc.add_argument("--requests-per-window", type=positive_int, help="overrides the role's request limit")
    kc.add_argument("--tokens-per-window", type=positive_int, help="overrides the role's token limit")
    ka.add_parser("list", help="list keys (never their secrets)")
    kr = ka.add_parser("revoke", help="revoke a key at once")
    kr.add_argument("key_id")
    k.set_defaults(func=_keys)

    f = sub.add_parser("finetune", help="train an industry LoRA adapter (peft) on a CSV/JSONL dataset")
    from finetune.cli import add_arguments, run

    add_arguments(f)
    f.set_defaults(func=run)

    c = sub.add_parser("check-config", help="validate a config file and the files it names")
    c.add_argument("config", type=Path)
    c.set_defaults(func=_check_config)

    g = sub.add_parser("generate", help="ask a running service for copy")
    g.add_argument("--url", default="http://127.0.0.1:8000")
    g.add_argument("--industry", required=True)
    g.add_argument("--product", required=True)
    g.add_argument("--keywords", help="comma-separated")
    g.add_argument("--tone")
    g.add_argument("--language", choices=["en", "zh"])
    g.add_argument("--length", choices=["short", "medium", "long"], default="medium")
    g.add_argument("--temperature", type=float)
    g.add_argument("--max-tokens", dest="max_tokens", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--stream", action="store_true")
    g.add_argument("--timeout", type=float, default=300)
    g.add_argument("--api-key", default=os.environ.get("COPYSERVE_API_KEY"), help="or set COPYSERVE_API_KEY")
    g.set_defaults(func=_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"copyserve: {err}", file=sys.stderr)
        return 2
    except httpx.HTTPError as err:
        print(f"copyserve: cannot reach the service: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
