"""Command line: run the emulator on loopback and write ready-to-use connection files.

    python -m sf_oauth_provider.emulator [--port 0] [--state-dir DIR] [--seed N] [--tls]
        [--print-env] [--session-timeout S] [--page-size N] [--login-rate-limit N]
        [--fault ENDPOINT:KIND[,KIND...]] [--fault-rate ENDPOINT:RATE[:KIND[,KIND...]]]

``--fault`` plans a sequence of faults (one consumed per request; ``latency=SECONDS`` and ``ok``
are allowed kinds); ``--fault-rate`` makes a fraction of requests fail (kinds default to
``json503``). ``--tls`` serves https with a certificate written to the state dir (its CA goes into
every connection as extra ``ca_bundle``). ``--print-env`` prints ``export AIRFLOW_CONN_...``
lines (also written to ``env.sh`` in the state dir). Prints the base URLs, the file paths and
finally ``READY <base_url>``. Stops on SIGINT / SIGTERM. A state dir that another user owns or
can write is refused (exit 2).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from .connections import env_lines, write_connections_file
from .files import UnsafeStateDir, prepare_state_dir
from .seed import seed_demo_org
from .server import serve
from .state import Settings

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m sf_oauth_provider.emulator", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--state-dir", default=None, help="where to write connections.json and the demo key")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--session-timeout", type=float, default=None)
    p.add_argument("--page-size", type=int, default=None)
    p.add_argument("--login-rate-limit", type=int, default=None)
    p.add_argument("--fault", action="append", default=[], metavar="ENDPOINT:KIND[,KIND...]")
    p.add_argument("--fault-rate", action="append", default=[], metavar="ENDPOINT:RATE[:KINDS]")
    p.add_argument("--synthetic", action="append", default=[], metavar="OBJECT=ROWS",
                   help="serve ROWS synthetic records of OBJECT (Opportunity) made on demand, e.g. Opportunity=1000000")
    p.add_argument("--tls", action="store_true", help="serve https (certificate and CA written to the state dir)")
    p.add_argument("--print-env", action="store_true", help="print export AIRFLOW_CONN_...=... lines for a shell")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM."""
    args = parse_args(argv)
    settings = Settings()
    if args.session_timeout is not None:
        settings.session_timeout = args.session_timeout
    if args.page_size is not None:
        settings.page_size = args.page_size
    if args.login_rate_limit is not None:
        settings.login_rate_limit = args.login_rate_limit
    org = seed_demo_org(args.seed, settings=settings)

    plans: dict[str, dict[str, Any]] = {}
    try:
        for spec in args.fault:
            endpoint, _, kinds = spec.partition(":")
            plan = plans.setdefault(endpoint, {"sequence": [], "rate": 0.0, "kinds": None})
            plan["sequence"].extend(k for k in kinds.split(",") if k)
        for spec in args.fault_rate:
            endpoint, _, rest = spec.partition(":")
            rate, _, kinds = rest.partition(":")
            plan = plans.setdefault(endpoint, {"sequence": [], "rate": 0.0, "kinds": None})
            plan["rate"] = float(rate)
            if kinds:
                plan["kinds"] = [k for k in kinds.split(",") if k]
        for endpoint, plan in plans.items():
            org.set_faults(endpoint, **plan)
        for spec in args.synthetic:
            obj, _, rows = spec.partition("=")
            org.synthetic.configure(obj, int(rows), org.clock.now(), initial=True)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        state_dir = (
            prepare_state_dir(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="sf-emulator-"))
        )
    except UnsafeStateDir as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with serve(org, port=args.port, log_level=args.log_level, tls_dir=state_dir if args.tls else None) as emu:
        key_path = state_dir / "demo_private_key.pem"
        conn_path = state_dir / "connections.json"
        conns = write_connections_file(emu, conn_path, key_path)
        print(f"Salesforce org emulator (seed {args.seed}, org {org.org_id})")
        print(f"  My Domain / instance URL: {emu.base_url}")
        print(f"  login.salesforce.com:     {emu.login_url}")
        print(f"  test.salesforce.com:      {emu.test_url}")
        print(f"  connections file:         {conn_path}")
        print(f"  private key:              {key_path}")
        print(f"  shell exports:            {state_dir / 'env.sh'}")
        if emu.ca_bundle:
            print(f"  TLS CA bundle:            {emu.ca_bundle}")
        print(f"  admin API:                {emu.base_url}/__emulator/info", flush=True)
        if args.print_env:
            print("\n".join(env_lines(conns)))
        print(f"READY {emu.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
        print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
