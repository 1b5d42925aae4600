"""``copyserve finetune`` / ``python -m finetune``: train an industry LoRA adapter."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from contracts.config import resolve_source
from finetune.data import DatasetError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="base model folder, or embedded:<name>")
    p.add_argument("--family", required=True, choices=["llama", "qwen3", "gptj"])
    p.add_argument("--data", required=True, type=Path, help="CSV or JSONL: product_name, keywords, copy_text")
    p.add_argument("--industry", required=True, help="industry whose prompt template builds the prompts")
    p.add_argument("--out", required=True, type=Path, help="adapter folder to write")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--eval-fraction", type=float, default=0.15)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true", help="also export merged weights (GPT-J adapters are served so)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")


def run(args: argparse.Namespace) -> int:
    from finetune.config import TrainConfig

    try:
        config = TrainConfig(
            base_model=Path(resolve_source(args.base, Path.cwd())), family=args.family, data=args.data,
            output=args.out, industry=args.industry, rank=args.rank, alpha=args.alpha, dropout=args.dropout,
            learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
            eval_fraction=args.eval_fraction, max_steps=args.max_steps, seed=args.seed, merge=args.merge,
            resume=args.resume)
    except ValidationError as err:
        for e in err.errors():
            print(f"finetune: {'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}", file=sys.stderr)
        return 2
    from finetune.train import train

    try:
        manifest = train(config)
    except (DatasetError, ValueError) as err:
        print(f"finetune: {err}", file=sys.stderr)
        return 2
    m = manifest["metrics"]
    print(f"adapter written to {config.output} in {manifest['train_seconds']}s: eval loss "
          f"{m['eval_loss_before']} -> {m['eval_loss_after']} ({manifest['train_rows']} train rows, "
          f"{manifest['eval_rows']} held out)")
    print(json.dumps(manifest, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
