"""`copyserve adapters`: adapter releases through a running service's HTTP API (list, register, delete,
history, alias moves, promote, rollback, evaluation, release policy). Changing needs an admin key (``--api-key`` or
``COPYSERVE_API_KEY``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import httpx


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _aliases(table: dict) -> str:
    return ", ".join(f"{a}=v{v}" for a, v in sorted(table.items())) or "-"


def show_list(answer: dict) -> str:
    rows = [["NAME", "MODEL", "KIND", "SERVES", "DIGEST", "VERSIONS", "ALIASES"]]
    for a in answer["data"]:
        rows.append([a["name"], a["base_model"], a["kind"], f"v{a['version']}", (a.get("digest") or "-")[:12],
                     " ".join(f"v{v['version']}" for v in a.get("versions", [])), _aliases(a.get("aliases", {}))])
    return _table(rows) if answer["data"] else "no adapters registered"


def show_history(answer: dict) -> str:
    rows = [["AT", "WHO", "ACTION", "ALIAS", "FROM", "TO", "REASON"]]
    for e in answer["data"]:
        version = lambda v: "-" if v is None else f"v{v}"  # noqa: E731
        rows.append([time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e.get("who") or "-",
                     e["action"], e.get("alias") or "-", version(e.get("from")), version(e.get("to")),
                     e.get("reason") or ""])
    return _table(rows) if answer["data"] else f"no history for {answer.get('name')}"


def show_move(answer: dict) -> str:
    before = f"v{answer['from']}" if answer.get("from") else "unset"
    return f"{answer['name']}@{answer['alias']}: {before} -> v{answer['to']}\naliases: {_aliases(answer['aliases'])}"


def show_registered(answer: dict) -> str:
    what = "already registered as" if answer.get("unchanged") else "registered as"
    return (f"{answer['name']}: {what} v{answer['version']} (digest {answer['digest'][:12]})\n"
            f"aliases: {_aliases(answer['aliases'])}")


def show_deleted(answer: dict) -> str:
    return f"{answer['name']}" + (f"@v{answer['version']}" if "version" in answer else "") + ": deleted"


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _win_rate(rate: dict | None) -> str:
    if not rate or rate["rate"] is None:
        return "-" if not rate else f"- ({rate['ties']} ties)"
    low, high = rate["ci95"]
    return (f"{_percent(rate['rate'])} [{_percent(low)}, {_percent(high)}] {rate['wins']}-{rate['losses']} "
            f"({rate['ties']} ties)")


def show_evaluation(answer: dict) -> str:
    """A row per version; the win rate is on shadowed pairs against the version stable points at."""
    stable = answer["aliases"].get("stable")
    rows = [["VERSION", "ALIASES", "SAMPLES", "SHADOWED", "ERRORS", "FLAGGED", "SENTIMENT", "WIN RATE VS STABLE"]]
    for v in answer["versions"]:
        means = {name: m["mean"] for name, m in v["metrics"].items()}
        sentiment = means.get("sentiment")
        rows.append([f"v{v['version']}", ",".join(v["aliases"]) or "-", str(v["samples"]),
                     str(v.get("shadow_samples", 0)), _percent((v.get("error_rate") or {}).get("mean")),
                     _percent(means.get("flagged")), "-" if sentiment is None else f"{sentiment:.3f}",
                     _win_rate(v.get("pairs", {}).get(f"{answer['name']}@v{stable}"))])
    return _table(rows)


def show_policy(answer: dict) -> str:
    if answer.get("deleted"):
        return f"{answer['name']}: release policy deleted"
    if answer["policy"] is None:
        return f"{answer['name']}: no release policy"
    lines = [f"{k}: {'-' if v is None else v}" for k, v in answer["policy"].items()]
    verdict = answer.get("verdict")
    if verdict:
        lines.append(f"now (canary v{verdict['canary']}, stable v{verdict['stable']}): {verdict['action'] or 'hold'}"
                     f": {verdict['reason']}")
    return "\n".join(lines)


POLICY_FIELDS = ("min_samples", "rollback_min_samples", "max_error_rate", "max_flag_rate", "min_win_rate",
                 "auto_promote", "auto_rollback")


def _policy_request(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    path = f"/v1/adapters/{args.name}/policy"
    if args.delete:
        return "DELETE", path, None
    given = {f: getattr(args, f) for f in POLICY_FIELDS if getattr(args, f) is not None}
    return ("PUT", path, given) if given else ("GET", path, None)


def request(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    """The HTTP call a command makes: method, path, body."""
    reason = {"reason": args.reason} if getattr(args, "reason", None) else {}
    if args.action == "list":
        return "GET", "/v1/adapters", None
    if args.action == "history":
        return "GET", f"/v1/adapters/{args.name}/history?limit={args.limit}", None
    if args.action == "evaluation":
        return "GET", f"/v1/adapters/{args.name}/evaluation", None
    if args.action == "policy":
        return _policy_request(args)
    if args.action == "register":
        alias = None if args.alias == "none" else args.alias
        return "POST", "/v1/adapters", {"name": args.name, "base_model": args.base_model,
                                        "path": os.path.abspath(args.path), "alias": alias, **reason}
    if args.action == "delete":
        version = f"/versions/v{args.version.removeprefix('v')}" if args.version else ""
        return "DELETE", f"/v1/adapters/{args.name}{version}", None
    if args.action == "promote":
        return "POST", f"/v1/adapters/{args.name}/promote", {"from": args.from_, "to": args.to, **reason}
    if args.action == "rollback":
        return "POST", f"/v1/adapters/{args.name}/rollback", {"alias": args.alias, **reason}
    version = int(args.version) if args.version.isdigit() and len(args.version) < 8 else args.version
    return "PUT", f"/v1/adapters/{args.name}/aliases/{args.alias}", {"version": version, **reason}


SHOW = {"list": show_list, "register": show_registered, "delete": show_deleted, "history": show_history,
        "promote": show_move, "rollback": show_move, "alias": show_move, "evaluation": show_evaluation,
        "policy": show_policy}


def run(args: argparse.Namespace) -> int:
    method, path, body = request(args)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=args.timeout) as client:
        response = client.request(method, path, json=body)
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": {"message": response.text}}
    if not response.is_success:
        print(f"copyserve: {response.status_code}: {answer.get('error', {}).get('message', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, ensure_ascii=False, indent=2) if args.json else SHOW[args.action](answer))
    return 0


def add_commands(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    common.add_argument("--api-key", "--key", dest="api_key", default=os.environ.get("COPYSERVE_API_KEY"),
                        help="an API key (an admin key to change anything); or set COPYSERVE_API_KEY")
    common.add_argument("--json", action="store_true", help="print the service's JSON answer")
    common.add_argument("--timeout", type=float, default=30)
    changing = argparse.ArgumentParser(add_help=False)
    changing.add_argument("--reason", help="recorded in the history")

    a = sub.add_parser("adapters", help="adapter versions and aliases on a running service")
    actions = a.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="every adapter: versions, digests, aliases")
    g = actions.add_parser("register", parents=[common, changing],
                           help="register an adapter folder as a new version (identical content: the version it is)")
    g.add_argument("name")
    g.add_argument("path", help="the peft adapter folder, as the model servers see it")
    g.add_argument("--base-model", required=True, help="the model it was trained on (GET /v1/models)")
    g.add_argument("--alias", default="stable", help="the alias to move onto it: stable, canary, ... or none")
    d = actions.add_parser("delete", parents=[common], help="delete one version (--version) or the whole name")
    d.add_argument("name")
    d.add_argument("--version", help="3 or v3; without it every version, alias and policy of the name goes")
    h = actions.add_parser("history", parents=[common], help="registrations and alias moves, newest first")
    h.add_argument("name")
    h.add_argument("--limit", type=int, default=50)
    p = actions.add_parser("promote", parents=[common, changing], help="move one alias onto another's version")
    p.add_argument("name")
    p.add_argument("--from", dest="from_", default="canary", help="the alias whose version is promoted")
    p.add_argument("--to", default="stable", help="the alias that moves")
    r = actions.add_parser("rollback", parents=[common, changing],
                           help="move an alias back to where it pointed before its last move")
    r.add_argument("name")
    r.add_argument("--alias", default="stable")
    m = actions.add_parser("alias", parents=[common, changing], help="point an alias at a version")
    m.add_argument("name")
    m.add_argument("alias")
    m.add_argument("version", help="3, v3 or at least 8 hex digits of the version's digest")
    e = actions.add_parser("evaluation", parents=[common], help="each version's scores and win rate against stable")
    e.add_argument("name")
    pol = actions.add_parser("policy", parents=[common], help="show, set (any option: replaces the whole policy; "
                             "the rest take their defaults) or --delete the automatic promote/rollback policy")
    pol.add_argument("name")
    pol.add_argument("--min-samples", type=int, help="answers canary needs before a promote (default 200)")
    pol.add_argument("--rollback-min-samples", type=int, help="requests before a rate can roll back (default 20)")
    pol.add_argument("--max-error-rate", type=float, help="e.g. 0.05")
    pol.add_argument("--max-flag-rate", type=float, help="answers with a compliance flag, e.g. 0.1")
    pol.add_argument("--min-win-rate", type=float, help="on shadowed pairs against stable, e.g. 0.5")
    pol.add_argument("--auto-promote", action=argparse.BooleanOptionalAction, default=None)
    pol.add_argument("--auto-rollback", action=argparse.BooleanOptionalAction, default=None)
    pol.add_argument("--delete", action="store_true", help="remove the policy")
    a.set_defaults(func=run)
