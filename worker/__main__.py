"""`baton-worker` / `python -m worker`: run the agent in this notebook or shell.

The agent authenticates with a worker token, or enrolls: it exchanges a single-use
enrollment code (``--enroll``) for a token of this session, which it keeps in memory only:
never on disk, never in the environment its jobs inherit.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from worker.agent import Agent, AgentConfig
from worker.client import ApiError, WorkerClient
from worker.deadline import add_session_arguments, session_options
from worker.jobenv import hide_agent_from_jobs

log = logging.getLogger("worker")
ENROLL_ENV = "BATON_ENROLL_CODE"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="baton-worker", description="Run a Baton worker agent.")
    parser.add_argument(
        "--api", default=env.get("BATON_API"), help="control plane URL (env BATON_API)"
    )
    parser.add_argument(
        "--token",
        default=env.get("BATON_WORKER_TOKEN"),
        help="worker token (env BATON_WORKER_TOKEN)",
    )
    parser.add_argument(
        "--enroll",
        metavar="CODE",
        # Taken out of the environment at once: jobs inherit the agent's environment.
        default=env.pop(ENROLL_ENV, None),
        help=f"single-use enrollment code, exchanged for this session's token (env {ENROLL_ENV})",
    )
    parser.add_argument("--name", default=env.get("BATON_WORKER_NAME") or socket.gethostname())
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(env.get("BATON_WORKER_DIR") or Path.home() / ".baton" / "worker"),
        help="where attempts keep their files (env BATON_WORKER_DIR)",
    )
    parser.add_argument(
        "--claim-wait", type=float, default=30.0, help="long-poll seconds per claim"
    )
    parser.add_argument(
        "--kill-grace", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL"
    )
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    host = parser.add_argument_group("host description (detected when omitted)")
    host.add_argument("--platform", default=env.get("BATON_PLATFORM"))
    host.add_argument("--gpu-name", default=None)
    host.add_argument("--gpu-count", type=int, default=None)
    host.add_argument("--gpu-memory-mb", type=int, default=None)
    add_session_arguments(parser, env)
    host.add_argument("--log-level", default=env.get("BATON_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.api:
        parser.error("the control plane URL is required: --api URL or BATON_API")
    if not args.token and not args.enroll:
        parser.error(
            "a worker token or an enrollment code is required: --token TOKEN or "
            "BATON_WORKER_TOKEN (baton tokens create), or --enroll CODE (baton bootstrap --enroll)"
        )
    try:
        session_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def enroll(api: str, code: str) -> str | None:
    """The worker token the code buys, or None (said why) when the control plane refuses it."""
    client = WorkerClient(api, None)
    try:
        reply = client.enroll(code)
    except ApiError as exc:
        log.error("enrollment refused: %s", exc.detail)
        return None
    finally:
        client.close()
    log.info("enrolled: this session's worker token expires at %s", reply["expires_at"])
    token: str = reply["token"]
    return token


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s baton-worker[%(process)d] %(message)s",
        stream=sys.stderr,
    )
    if not hide_agent_from_jobs():
        log.warning("jobs can read this agent's environment from /proc (not Linux?)")
    token = enroll(args.api, args.enroll) if args.enroll else args.token
    if token is None:
        return 2
    config = AgentConfig(
        api=args.api,
        token=token,
        name=args.name,
        work_dir=args.work_dir.expanduser().resolve(),
        claim_wait=args.claim_wait,
        kill_grace=args.kill_grace,
        max_jobs=args.max_jobs,
        session=session_options(args),
        host_overrides={
            "platform": args.platform,
            "gpu_name": args.gpu_name,
            "gpu_count": args.gpu_count,
            "gpu_memory_mb": args.gpu_memory_mb,
        },
    )
    return Agent(config).run()


if __name__ == "__main__":
    sys.exit(main())
