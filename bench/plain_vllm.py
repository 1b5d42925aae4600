"""Plain vLLM's own OpenAI server for a copyserve model, with exactly the engine arguments the graph
gives that model: they come from the same function (``engine_args``) the graph's engine uses.

    python bench/plain_vllm.py --config configs/local.yaml --model smollm2-135m-instruct --port 8100
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("configs/local.yaml"))
    p.add_argument("--model", help="model name from the config (default: the first)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    args = p.parse_args()

    from contracts.config import load_config
    from deployments.engines.vllm_engine import engine_args, engine_core_env
    from serve_app.builder import engine_env

    config = load_config(args.config)
    model = config.model(args.model) if args.model else config.models[0]
    os.environ.update(engine_env(model))  # the same environment the graph gives the model's replica
    os.environ.update(engine_core_env(model))  # and what its engine core gets (threads, no compile when eager)

    import uvloop
    from vllm.entrypoints.launchers.api_server.entry import run_server
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    namespace = make_arg_parser(FlexibleArgumentParser()).parse_args(["--host", args.host, "--port", str(args.port)])
    for field in dataclasses.fields(engine := engine_args(model)):  # vLLM builds its engine args back from these
        setattr(namespace, field.name, getattr(engine, field.name))
    if isinstance(namespace.served_model_name, str):  # the CLI gives a list of names
        namespace.served_model_name = [namespace.served_model_name]
    validate_parsed_serve_args(namespace)
    print(f"[plain vLLM] {model.name} from {model.source} on http://{args.host}:{args.port}", flush=True)
    uvloop.run(run_server(namespace))


if __name__ == "__main__":
    main()
