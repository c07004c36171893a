"""``certscan hooks``: list the renewal hooks, run them on the current findings, decide pending
actions and show the record.

The hooks are read from the ``[hooks.NAME]`` sections of the config file
(:mod:`exporters.hooks.config`); the config is validated before the inventory is opened. Exit
codes follow :mod:`scanner.cli.app`: ``run`` exits 1 when an action failed, 2 on bad usage (an
unknown hook, a run id that is not pending), 3 operational.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scanner.cli.options import ConfigOption, DbOption
from scanner.cli.report import open_existing
from scanner.errors import UsageError
from scanner.serialize import iso, json_line
from scanner.text import safe

if TYPE_CHECKING:
    from exporters.hooks.config import Hook, HooksConfig
    from scanner.inventory import hooks as store_hooks

hooks_app = typer.Typer(
    help=(
        "Renewal and notification hooks: act on findings (commands, ACME, webhooks, e-mail; "
        "notifications once per certificate, again only when its finding rises, or as a "
        "daily UTC digest) and keep the record."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

HookOption = Annotated[str | None, typer.Option("--hook", metavar="NAME", help="Only this hook.")]
ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        metavar="NAME",
        help="On whose behalf (a note); the record names the local user who ran the command.",
    ),
]


def load_hooks(config_path: Path | None) -> HooksConfig:
    """The ``[hooks]`` of the config file (``--config``, CERTSCAN_CONFIG or the XDG default)."""
    from exporters.hooks.config import parse_hooks
    from reports.policy import load_config

    config = load_config(config_path, env=os.environ)
    source = str(config.path) if config.path is not None else "config"
    return parse_hooks(
        config.sections.get("hooks"),
        source=source,
        ari=config.sections.get("ari"),
        policy=config.policy,
    )


def _echo(line: str) -> None:
    typer.echo(line)


@hooks_app.command("list")
def list_hooks(config: ConfigOption = None) -> int:
    """List the hooks the config file declares."""
    from scanner.cli.console import cell, simple_table, stdout_console

    hooks = load_hooks(config)
    if not hooks.hooks:
        _echo("no hooks configured ([hooks.NAME] sections of the config file)")
        return 0
    table = simple_table(
        "hooks", ("name", "action", "kinds", "min severity", "approval", "timeout", "sends")
    )
    for hook in hooks.hooks:
        table.add_row(
            cell(hook.name),
            cell(type(hook.action).kind),
            cell(",".join(sorted(hook.selector.kinds))),
            cell(hook.selector.min_severity.label),
            cell("yes" if hook.approval else "no"),
            cell(f"{hook.timeout:g} s"),
            cell(_sends(hook)),
        )
    stdout_console().print(table)
    return 0


def _sends(hook: Hook) -> str:
    """When a notification goes out: at once, or as the daily digest (UTC)."""
    if type(hook.action).kind not in ("email", "webhook"):
        return "-"
    return "daily digest (UTC)" if hook.digest == "daily" else "at once"


@hooks_app.command("run")
def run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run; change nothing.")
    ] = False,
    hook: HookOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> int:
    """Evaluate the current open findings against the hooks and act (once per certificate)."""
    import trio

    from exporters.hooks.digest import Delivered
    from exporters.hooks.runner import (
        Outcome,
        after_hooks,
        describe,
        digest_lines,
        evaluate,
        execute,
    )

    hooks = load_hooks(config)
    if hook is not None and hooks.get(hook) is None:
        raise UsageError(f"--hook {safe(hook, 100)}: no such hook in the config file")
    now = datetime.now(UTC)
    with open_existing(db) as inventory:
        steps = evaluate(inventory, hooks, now, only=hook)
        if dry_run or not steps:
            for item in steps:
                _echo(("would " if dry_run else "") + safe(describe(item), 400))
            if not steps:
                _echo("nothing to do")
                if not dry_run:  # digests due, renewals being verified, ARI windows due
                    sent = trio.run(lambda: after_hooks(inventory, hooks, [], now))
                    for line in digest_lines(sent):
                        _echo(safe(line, 400))
                    return 1 if any(not d.result.ok for d in sent) else 0
            return 0

        async def act() -> tuple[list[Outcome], list[Delivered]]:
            done = await execute(inventory, steps, concurrency=hooks.concurrency, now=now)
            return done, await after_hooks(inventory, hooks, done, now)

        outcomes, digests = trio.run(act)
    failed = sum(not d.result.ok for d in digests)
    for line in digest_lines(digests):
        _echo(safe(line, 400))
    for outcome in sorted(outcomes, key=lambda o: o.run_id):
        result = outcome.result
        if outcome.planned.step == "queue":
            state = f"queued as pending run {outcome.run_id}"
        elif result is None:
            state = f"run {outcome.run_id} taken by another runner"
        elif result.ok:
            state = f"run {outcome.run_id} succeeded"
            if outcome.verified is not None:
                v = outcome.verified
                state += f", deployed on {v.deployed} of {v.total} endpoints"
        else:
            failed += 1
            state = f"run {outcome.run_id} failed (exit status {result.exit_status})"
        _echo(safe(f"{describe(outcome.planned)}: {state}", 400))
    return 1 if failed else 0


def _decide(run_id: int, approve: bool, by: str | None, db: str | None) -> int:
    from scanner.inventory import hooks as store_hooks

    who = f"local:{_user()}" + (f" (for {safe(by, 64)})" if by else "")
    with open_existing(db) as inventory:
        done = store_hooks.decide(
            inventory.engine, run_id, approve=approve, by=who, now=datetime.now(UTC)
        )
    if not done:
        raise UsageError(f"hook run {run_id}: no pending run with this id")
    _echo(f"hook run {run_id} {'approved' if approve else 'rejected'} by {safe(who, 100)}")
    return 0


def deployment(run: store_hooks.HookRunRecord) -> str:
    """``deployed on N of M`` for a renewal being verified, else ''."""
    if run.endpoints_total is None:
        return ""
    return f"deployed on {run.endpoints_deployed or 0} of {run.endpoints_total}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@hooks_app.command("approve")
def approve(
    run_id: Annotated[int, typer.Argument(metavar="ID", help="A pending run's id.")],
    by: ByOption = None,
    db: DbOption = None,
) -> int:
    """Approve a pending action; the next `certscan hooks run` performs it."""
    return _decide(run_id, True, by, db)


@hooks_app.command("reject")
def reject(
    run_id: Annotated[int, typer.Argument(metavar="ID", help="A pending run's id.")],
    by: ByOption = None,
    db: DbOption = None,
) -> int:
    """Reject a pending action: the hook will not act on that certificate."""
    return _decide(run_id, False, by, db)


@hooks_app.command("history")
def history(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 100,
    db: DbOption = None,
) -> int:
    """The recorded hook runs, newest first."""
    from scanner.cli.console import cell, simple_table, stdout_console
    from scanner.inventory import hooks as store_hooks

    with open_existing(db) as inventory:
        runs = store_hooks.history(inventory.engine, limit=limit)
    if as_json:
        for r in runs:
            _echo(
                json_line(
                    {
                        "id": r.id,
                        "hook": r.hook,
                        "sha256": r.sha256,
                        "address": r.address,
                        "port": r.port,
                        "sni": r.sni,
                        "kind": r.kind,
                        "status": r.status,
                        "created_at": iso(r.created_at),
                        "started_at": iso(r.started_at),
                        "finished_at": iso(r.finished_at),
                        "exit_status": r.exit_status,
                        "output_tail": r.output_tail,
                        "new_sha256": r.new_sha256,
                        "attempts": r.attempts,
                        "next_attempt_at": iso(r.next_attempt_at),
                        "decided_by": r.decided_by,
                        "decided_at": iso(r.decided_at),
                        "endpoints_deployed": r.endpoints_deployed,
                        "endpoints_total": r.endpoints_total,
                    }
                )
            )
        return 0
    table = simple_table(
        "hook runs",
        (
            "id",
            "hook",
            "endpoint",
            "certificate",
            "status",
            "deployed",
            "attempts",
            "exit",
            "finished",
        ),
    )
    for r in runs:
        endpoint = f"{r.address}:{r.port}" + (f" ({r.sni})" if r.sni else "")
        table.add_row(
            cell(r.id),
            cell(r.hook),
            cell(endpoint),
            cell(r.sha256[:16]),
            cell(r.status),
            cell(deployment(r)),
            cell(r.attempts),
            cell("" if r.exit_status is None else r.exit_status),
            cell(iso(r.finished_at) or ""),
        )
    stdout_console().print(table)
    return 0
