"""``airflow sf-oauth …``: the provider's CLI group for Airflow ≥ 3.2 (provider info ``cli`` key).

Airflow imports :func:`get_sf_oauth_cli_commands` when it builds its parser; the commands' code
loads only when one runs (``lazy_load_command``), so ``airflow --help`` stays fast. Older
releases ignore the ``cli`` key: use the ``sf-oauth`` console script there.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["get_sf_oauth_cli_commands", "doctor", "token", "cache_list", "cache_purge"]


def _run(name: str, args: argparse.Namespace) -> None:
    from sf_oauth_provider import cli

    code = cli.run_command(getattr(cli, f"_{name}"), args)
    if code:
        sys.exit(code)  # Airflow ignores a command's return value


def doctor(args: argparse.Namespace) -> None:
    _run("doctor", args)


def token(args: argparse.Namespace) -> None:
    _run("token", args)


def cache_list(args: argparse.Namespace) -> None:
    _run("cache_list", args)


def cache_purge(args: argparse.Namespace) -> None:
    _run("cache_purge", args)


def get_sf_oauth_cli_commands() -> list[Any]:
    """The ``sf-oauth`` group: ``doctor``, ``token``, ``cache list``, ``cache purge``."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    from sf_oauth_provider import cli

    def action(path: tuple[str, ...], help_text: str, specs: tuple) -> Any:
        name = "_".join(path)
        return ActionCommand(name=path[-1], help=help_text, description=help_text,
                             func=lazy_load_command(f"sf_oauth_provider.cli.airflow_commands.{name}"),
                             args=tuple(Arg(flags, **kwargs) for flags, kwargs in specs))

    top = [action(path, h, specs) for path, h, _, specs in cli.COMMANDS if len(path) == 1]
    cache = [action(path, h, specs) for path, h, _, specs in cli.COMMANDS if path[0] == "cache"]
    top.append(GroupCommand(name="cache", help=cli.GROUP_HELP["cache"], subcommands=cache))
    return [GroupCommand(name="sf-oauth", help="Salesforce OAuth connections: doctor, token, cache",
                         subcommands=top)]
