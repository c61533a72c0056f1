"""``sf-oauth``: operate Salesforce OAuth connections from a shell — ``doctor``, ``token``, ``cache``.

A console script (``sf-oauth``), and the same commands as ``airflow sf-oauth …`` on Airflow ≥ 3.2
(:mod:`sf_oauth_provider.cli.airflow_commands`). It works with or without a running Airflow: it
reads connections the way the hook does (``AIRFLOW_CONN_*``, secrets backends, the metadata DB
where reachable), plus ``--conn-file`` / ``$SF_OAUTH_CONN_FILE`` (a local connections JSON file).

Exit status: 0 when everything asked for worked (``doctor``: every check passed), 1 otherwise,
2 for a usage error. Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Callable, Dict, Sequence, Tuple

__all__ = ["main", "COMMANDS", "run_command"]

DEFAULT_CONN_ID = "salesforce_oauth_default"

#: argument specs: (flags, argparse keyword arguments), shared with the Airflow CLI group
ARG_CONN_FILE = (("--conn-file",), {"metavar": "PATH", "default": None,
                                    "help": "local connections JSON file ({conn_id: {conn_type, host, ...}}); "
                                            "default $SF_OAUTH_CONN_FILE"})
ARG_JSON = (("--json",), {"action": "store_true", "default": False, "help": "print JSON for scripts"})
ARG_CONN_ID_OPTIONAL = (("conn_id",), {"nargs": "?", "default": DEFAULT_CONN_ID, "metavar": "CONN_ID",
                                       "help": f"connection id (default {DEFAULT_CONN_ID})"})
ARG_CONN_ID = (("conn_id",), {"metavar": "CONN_ID", "help": "connection id"})
ARG_PURGE_CONN_ID = (("conn_id",), {"nargs": "?", "default": None, "metavar": "CONN_ID",
                                    "help": "the connection whose cached tokens to purge"})
ARG_ALL = (("--all",), {"action": "store_true", "default": False, "dest": "purge_all",
                        "help": "purge every cached entry"})
ARG_INCLUDE_REFRESH = (("--include-refresh",), {"action": "store_true", "default": False,
                                                "help": "also delete the newest refresh token (the next run of a "
                                                        "refresh_token connection then needs a fresh authorisation)"})


def _doctor(args: argparse.Namespace) -> tuple[int, Any]:
    from sf_oauth_provider.cli.doctor import DoctorContext, as_json, render, run_checks
    from sf_oauth_provider.cli.doctor_checks import CHECKS
    from sf_oauth_provider.cli.env import hook_for, redis_url

    hook = hook_for(args.conn_id)
    try:
        results = run_checks(DoctorContext(args.conn_id, hook, redis_url=redis_url()), CHECKS)
    finally:
        hook.close()
    text = as_json(args.conn_id, results) if args.json else render(args.conn_id, results)
    return 0 if all(result.passed for _, result in results) else 1, text


def _token(args: argparse.Namespace) -> tuple[int, Any]:
    from sf_oauth_provider.cli.token_cmd import render_token, token_info

    info = token_info(args.conn_id)
    return 0, info if args.json else render_token(info)


def _cache_list(args: argparse.Namespace) -> tuple[int, Any]:
    from sf_oauth_provider.cli.cache_cmd import cache_entries, render_entries

    rows, warnings = cache_entries()
    return 0, {"entries": rows, "warnings": warnings} if args.json else render_entries(rows, warnings)


def _cache_purge(args: argparse.Namespace) -> tuple[int, Any]:
    from sf_oauth_provider.cli.cache_cmd import REFRESH_WARNING, purge, render_purge

    if (args.conn_id is None) == (not args.purge_all):
        return 2, "sf-oauth cache purge: give a CONN_ID or --all (not both)"
    if args.include_refresh:
        print(REFRESH_WARNING, file=sys.stderr)
    rows, notes = purge(None if args.purge_all else args.conn_id, args.include_refresh)
    return 0, {"purged": rows, "notes": notes} if args.json else render_purge(rows, notes)


Spec = Tuple[Tuple[str, ...], Dict[str, Any]]
#: a command: its exit status and what to print (text, or data printed as JSON)
Handler = Callable[[argparse.Namespace], Tuple[int, Any]]
#: (path, help, function, arguments): the command tree of both CLIs
COMMANDS: list[tuple[tuple[str, ...], str, Handler, tuple[Spec, ...]]] = [
    (("doctor",), "check a connection end to end, each check with its fix (exit 0: all pass)", _doctor,
     (ARG_CONN_ID_OPTIONAL, ARG_JSON, ARG_CONN_FILE)),
    (("token",), "describe the token tasks get now (fingerprint, user, org, expiry, scopes, serving layer)", _token,
     (ARG_CONN_ID, ARG_JSON, ARG_CONN_FILE)),
    (("cache", "list"), "list cached tokens of the file store and Redis (no secrets)", _cache_list,
     (ARG_JSON, ARG_CONN_FILE)),
    (("cache", "purge"), "drop cached tokens in every layer (the newest refresh token is kept)", _cache_purge,
     (ARG_PURGE_CONN_ID, ARG_ALL, ARG_INCLUDE_REFRESH, ARG_JSON, ARG_CONN_FILE)),
]
GROUP_HELP = {"cache": "the token stores: list or purge cached tokens"}


def airflow_group_hint() -> str:
    """Whether ``airflow sf-oauth …`` works with the installed Airflow (it loads provider CLI
    groups from 3.2 on), without importing Airflow."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("apache-airflow")
    except PackageNotFoundError:
        return "Airflow is not installed here: use `sf-oauth`."
    try:
        release = tuple(int(part) for part in installed.split(".")[:2])
    except ValueError:
        release = (0, 0)
    if release >= (3, 2):
        return f"The same commands run as `airflow sf-oauth …` (Airflow {installed})."
    return (f"`airflow sf-oauth …` needs Airflow >= 3.2 (it loads provider CLI groups from there on); "
            f"with Airflow {installed} use `sf-oauth`.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sf-oauth",
        description="Operate Salesforce OAuth connections: doctor, token, cache.",
        epilog=airflow_group_hint(),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for path, help_text, func, specs in COMMANDS:
        parent = sub
        if len(path) == 2:
            if path[0] not in groups:
                group = sub.add_parser(path[0], help=GROUP_HELP[path[0]])
                groups[path[0]] = group.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
            parent = groups[path[0]]
        command = parent.add_parser(path[-1], help=help_text, description=help_text)
        for flags, kwargs in specs:
            command.add_argument(*flags, **kwargs)
        command.set_defaults(handler=func)
    return parser


def run_command(func: Handler, args: argparse.Namespace) -> int:
    """Run one command: load ``--conn-file``, print its result, turn the package's errors into a
    message and exit status 1.

    While it runs, stdout goes to stderr: Airflow's loggers print to stdout, and stdout is kept
    for the result (``--json`` output stays parseable).
    """
    from sf_oauth_provider.cli.env import CONN_FILE_ENV, use_connections_file
    from sf_oauth_provider.cli.output import print_json, use_utf8
    from sf_oauth_provider.client.errors import SalesforceOAuthError

    use_utf8()
    conn_file = getattr(args, "conn_file", None) or os.environ.get(CONN_FILE_ENV)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            if conn_file:
                use_connections_file(conn_file)
            code, result = func(args)
        if code == 2:
            print(result, file=sys.stderr)
        elif isinstance(result, str):
            print(result)
        else:
            print_json(result)
        return code
    except (OSError, ValueError) as exc:
        if isinstance(exc, SalesforceOAuthError):
            print(f"error: {exc}", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except SalesforceOAuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sf-oauth`` console script."""
    args = build_parser().parse_args(argv)
    return run_command(args.handler, args)
