"""``echodesk``: one console script, a subcommand per service, plus the development supervisor.

Service modules are imported only when their subcommand runs, so an image that carries one
service's dependencies (the api image has no aiortc) still runs ``echodesk api``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

SERVICES = ("signaling", "media", "recorder", "api")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="echodesk", description="EchoDesk Voice")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in SERVICES:
        service = commands.add_parser(name, help=f"run the {name} service")
        if name == "api":
            _api_commands(service)
    run = commands.add_parser("run", help="run the whole stack on this machine (development)")
    run.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="where NATS, SQLite and recordings live"
    )
    run.add_argument(
        "--nats-port", type=int, default=4222, help="embedded nats-server port (a free one if taken)"
    )
    docs = commands.add_parser("docs", help="generate docs/events (JSON Schemas) and docs/configuration.md")
    docs.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    docs.add_argument("--dir", type=Path, default=Path("docs"))
    agent = commands.add_parser(
        "agent",
        help="write an agent straight to NATS KV, for testing signaling alone; the api manages agents "
        "and removes keys it does not know at its start-up",
    )
    agent.add_argument(
        "--nats-url", default=None, help="default: ECHODESK_NATS_URL, else the one `echodesk run` started"
    )
    agent.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="where `echodesk run` keeps its state"
    )
    agent.add_argument("--tenant", required=True)
    agent.add_argument("--agent-id", required=True)
    agent.add_argument("--extension", required=True)
    agent.add_argument("--username", required=True, help="SIP username (also the digest user)")
    agent.add_argument("--domain", required=True, help="the tenant's SIP domain (digest realm)")
    agent.add_argument("--password", required=True)
    agent.add_argument("--delete", action="store_true", help="remove the agent instead")
    args = parser.parse_args(argv)

    if args.command == "api" and args.api_command is not None:
        from services.api import cli as api_cli

        sys.exit(api_cli.main(args))
    elif args.command in SERVICES:
        importlib.import_module(f"services.{args.command}.main").main()
    elif args.command == "run":
        from shared.supervisor import Supervisor

        sys.exit(Supervisor(data_dir=args.data_dir, nats_port=args.nats_port).run())
    elif args.command == "agent":
        import asyncio

        asyncio.run(_put_agent(args))
    elif args.command == "docs":
        from shared import docs as generated

        if args.check:
            problems = generated.stale(args.dir)
            if problems:
                print(f"stale generated docs in {args.dir}: {', '.join(problems)}; run `echodesk docs`")
                sys.exit(1)
            print("generated docs are up to date")
        else:
            for path in generated.write(args.dir):
                print(f"wrote {path}")


def _api_commands(api: argparse.ArgumentParser) -> None:
    """``echodesk api`` serves; ``migrate``, ``create-tenant`` and ``create-key`` administer its database."""
    commands = api.add_subparsers(dest="api_command")
    commands.add_parser("migrate", help="apply the database migrations (the api also does at start-up)")
    tenant = commands.add_parser("create-tenant", help="create a tenant and print its first admin API key")
    tenant.add_argument("--name", required=True)
    tenant.add_argument("--sip-domain", required=True, help="agents' SIP domain and digest realm")
    tenant.add_argument("--region", default="GE", help="default region for national numbers")
    key = commands.add_parser(
        "create-key", help="issue an API key for an existing tenant (a lost admin key, say) and print it"
    )
    key.add_argument("--sip-domain", required=True, help="the tenant's SIP domain, e.g. dev.echodesk.local")
    key.add_argument("--name", default="admin (command line)")
    key.add_argument("--scope", choices=("read", "write", "admin"), default="admin")


async def _put_agent(args: argparse.Namespace) -> None:
    from shared import subjects
    from shared.bus import Bus
    from shared.records import agent_key, agent_record
    from shared.settings import CommonSettings
    from shared.supervisor import NATS_URL_FILE

    url = args.nats_url or os.environ.get("ECHODESK_NATS_URL")
    started = args.data_dir / NATS_URL_FILE
    if url is None and started.exists():
        url = started.read_text().strip()
    url = url or CommonSettings().nats_url
    bus = await Bus.connect(url, name="echodesk-cli", timeout=10)
    try:
        kv = await bus.bucket(subjects.AGENTS_KV)
        key = agent_key(args.domain, args.username)
        if args.delete:
            await kv.delete(key)
            print(f"deleted agent {key}")
            return
        record = agent_record(
            tenant_id=args.tenant,
            agent_id=args.agent_id,
            extension=args.extension,
            sip_username=args.username,
            domain=args.domain,
            password=args.password,
        )
        await kv.put(key, record.model_dump_json().encode())
        print(f"agent {key} written")
    finally:
        await bus.close()
