"""One mode of a scenario on the real topology: notebook hosts in network namespaces whose
sessions start, end and come back as the schedule says, with Baton (a control plane from the
wheel, agents pip-installed from it) or without (a person running one job per notebook).

Modes: ``by_hand`` (no Baton), ``lease_only`` (Baton with BATON_DEADLINE_AWARENESS=false),
``baton`` (as shipped). The driver plays the platforms and the person: it starts agents (or
jobs), hands out deadlines as platforms do (the session's start and limit; a spot notice in a
metadata service of the notebook's own), and ends sessions as platforms end them: SIGKILL of
every process in the namespace, or SIGSTOP / SIGCONT for a machine that sleeps.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.freetier.scenario import Account, JobShape, Scenario, Session, next_check, schedule
from tests.support import hosts
from tests.support.cp_host import ControlPlane
from tests.support.notebooks import Notebook, hidden_paths, make_notebook

MODES = ("by_hand", "lease_only", "baton")
HERE = Path(__file__).resolve().parent
IMDS_PORT = 8169
# Real seconds a run may go past its last scheduled moment to let the final reports land.
SETTLE_SECONDS = 3.0
log = logging.getLogger("freetier")


@dataclass
class Job:
    """One queued job: its shape and its place in the queue."""

    name: str
    shape: JobShape


@dataclass
class Lived:
    """A session as it happened: wall times of its start and end."""

    plan: Session
    started: float
    ended: float | None = None


@dataclass
class ModeRun:
    mode: str
    t0: float
    ended: float
    sessions: list[Lived]
    ledger: list[dict[str, Any]]  # every event of every job process, with its file's run id
    experiments: list[dict[str, Any]] = field(default_factory=list)
    finished_all: bool = False


def queue(scenario: Scenario) -> list[Job]:
    """The jobs in submission order: shapes interleaved, so long and short ones mix."""
    jobs: list[Job] = []
    for i in range(max(s.count for s in scenario.jobs)):
        jobs += [Job(f"{s.name}-{i + 1}", s) for s in scenario.jobs if i < s.count]
    return jobs


def job_argv(scenario: Scenario, job: Job, script: Path, ledger: Path) -> list[str]:
    shape = job.shape
    return [
        str(script),
        "--job",
        job.name,
        "--steps",
        str(shape.steps),
        "--step-seconds",
        f"{scenario.hour_seconds / shape.steps_per_hour:.6f}",
        "--startup-seconds",
        f"{scenario.minutes_wall(shape.startup_minutes):.6f}",
        "--checkpoint-every",
        f"{scenario.minutes_wall(shape.checkpoint_every_minutes):.6f}",
        "--checkpoint-seconds",
        f"{scenario.minutes_wall(shape.checkpoint_seconds / 60):.6f}",
        "--checkpoint-bytes",
        str(int(shape.checkpoint_mb * 1_000_000)),
        "--ledger",
        str(ledger),
    ]


def control_plane_settings(scenario: Scenario) -> dict[str, str]:
    b = scenario.baton
    return {
        "BATON_HEARTBEAT_SECONDS": f"{scenario.minutes_wall(b.heartbeat_minutes):.3f}",
        "BATON_LEASE_SECONDS": f"{scenario.minutes_wall(b.lease_minutes):.3f}",
        "BATON_REAPER_SECONDS": "1",
        "BATON_RECONCILE_SECONDS": "2",
        "BATON_CLAIM_WAIT_SECONDS": f"{scenario.minutes_wall(b.claim_wait_minutes):.3f}",
    }


class Driver:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        mode: str,
        topo: hosts.Topology,
        notebooks: dict[str, Notebook],
        cp: ControlPlane | None,
        logs: Path,
    ) -> None:
        self.scenario = scenario
        self.mode = mode
        self.topo = topo
        self.notebooks = notebooks
        self.cp = cp
        self.logs = logs
        self.accounts = {a.name: a for a in scenario.accounts}
        self.plan = schedule(scenario, seed, by_hand=mode == "by_hand")
        self.jobs = queue(scenario)
        self.ledger = topo.run_dir / "ledger"
        self.script = topo.run_dir / "job" / "train_job.py"
        self.lived: dict[tuple[str, int], Lived] = {}
        self.alive: dict[str, Lived] = {}
        # by hand: the job each notebook works on, its process, and the jobs nobody started
        self.current: dict[str, Job | None] = dict.fromkeys(self.accounts)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.unstarted = list(self.jobs)
        self.done_by_hand: set[str] = set()
        self.token = cp.worker_token("freetier") if cp is not None else ""
        self.experiment_ids: list[int] = []

    # --- setting up ------------------------------------------------------------------------

    def prepare(self) -> None:
        self.ledger.mkdir(mode=0o1777)
        self.ledger.chmod(0o1777)
        (self.topo.run_dir / "job").mkdir(mode=0o755)
        shutil.copy2(HERE / "train_job.py", self.script)
        self.script.chmod(0o644)
        if self.cp is not None:
            self._submit()

    def _submit(self) -> None:
        assert self.cp is not None
        http = self.cp.client()
        for job in self.jobs:
            argv = job_argv(self.scenario, job, self.script, self.ledger)
            body = {
                "name": job.name,
                "kind": "command",
                "config": {"command": "python " + " ".join(argv)},
                "max_attempts": 50,
            }
            reply = http.post("/api/v1/experiments", json=body)
            reply.raise_for_status()
            self.experiment_ids.append(int(reply.json()["id"]))

    # --- the platforms ---------------------------------------------------------------------

    def _agent_args(self, account: Account, plan: Session, at: float) -> list[str]:
        s, b = self.scenario, self.scenario.baton
        args = [
            "--claim-wait",
            f"{s.minutes_wall(b.claim_wait_minutes):.3f}",
            "--kill-grace",
            f"{s.minutes_wall(b.kill_grace_minutes):.3f}",
            "--checkpoint-margin",
            f"{s.minutes_wall(b.checkpoint_margin_minutes):.3f}",
            "--checkpoint-margin-min",
            f"{s.minutes_wall(b.checkpoint_margin_min_minutes):.3f}",
            "--checkpoint-margin-max",
            f"{s.minutes_wall(b.checkpoint_margin_max_minutes):.3f}",
            "--deadline-awareness",
            "false" if self.mode == "lease_only" else "true",
        ]
        if account.end == "spot":
            args += ["--platform", "ec2", "--imds-url", f"http://127.0.0.1:{IMDS_PORT}"]
            args += ["--spot-poll", f"{s.minutes_wall(b.spot_poll_minutes):.3f}"]
        elif plan.known_hours is not None:
            # What a notebook platform tells the agent: when the session began, and its limit.
            args += ["--platform", account.platform, "--session-start", f"{at:.3f}"]
            args += ["--session-hours", f"{s.wall(plan.known_hours) / 3600:.9f}"]
        return args

    def start(self, plan: Session, at: float) -> None:
        account = self.accounts[plan.account]
        notebook = self.notebooks[plan.account]
        lived = Lived(plan, time.time())
        self.lived[(plan.account, plan.index)] = lived
        self.alive[plan.account] = lived
        if plan.wakes:
            self._signal_all(notebook, signal.SIGCONT)
        elif self.mode == "by_hand":
            self._next_job_by_hand(plan.account)
        else:
            assert self.cp is not None
            if account.end == "spot" and plan.notice is not None:
                self._imds(notebook, plan)
            notebook.start_agent(
                api=self.cp.url,
                token=self.token,
                name=f"{plan.account}-{plan.index}",
                log=self.logs / f"agent-{self.mode}-{plan.account}.log",
                extra=tuple(self._agent_args(account, plan, at)),
            )

    def _imds(self, notebook: Notebook, plan: Session) -> None:
        assert plan.notice is not None
        argv = hosts.Host.argv(  # as the platform (root), not the notebook's user
            notebook.host,
            [
                sys.executable,
                HERE / "imds.py",
                "--port",
                str(IMDS_PORT),
                "--notice-at",
                f"{self.wall_at(plan.notice):.3f}",
                "--end-at",
                f"{self.wall_at(plan.end):.3f}",
            ],
        )
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def end(self, plan: Session) -> None:
        notebook = self.notebooks[plan.account]
        if plan.how == "sleep":
            self._signal_all(notebook, signal.SIGSTOP)
        else:
            notebook.kill()
            self.procs.pop(plan.account, None)
        self.lived[(plan.account, plan.index)].ended = time.time()
        self.alive.pop(plan.account, None)

    @staticmethod
    def _signal_all(notebook: Notebook, signum: signal.Signals) -> None:
        for pid in notebook.host.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    # --- the person ------------------------------------------------------------------------

    def _next_job_by_hand(self, account: str) -> None:
        """Start (or resume) this notebook's job, or the next one nobody has started."""
        job = self.current[account]
        if job is None or job.name in self.done_by_hand:
            job = self.unstarted.pop(0) if self.unstarted else None
            self.current[account] = job
        if job is None:
            return
        notebook = self.notebooks[account]
        argv = job_argv(self.scenario, job, self.script, self.ledger)
        save = notebook.host.user.home / "saves" / job.name
        by_hand = [*argv, "--save-dir", str(save)]
        # Hand-run notebooks save on the person's schedule, not the job's.
        by_hand[by_hand.index("--checkpoint-every") + 1] = (
            f"{self.scenario.minutes_wall(self.scenario.save_every_minutes):.6f}"
        )
        out = (self.logs / f"hand-{account}.log").open("ab")
        with out:
            self.procs[account] = subprocess.Popen(
                notebook.argv([notebook.python, *by_hand]),
                env=notebook.env(),
                cwd="/",
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def check_by_hand(self) -> None:
        """A person looks: a notebook whose job ended gets the next one."""
        for account in list(self.alive):
            proc = self.procs.get(account)
            if proc is not None and proc.poll() is None:
                continue
            job = self.current[account]
            if job is not None and proc is not None and proc.returncode == 0:
                self.done_by_hand.add(job.name)
            self._next_job_by_hand(account)

    # --- the run ---------------------------------------------------------------------------

    def wall_at(self, hour: float) -> float:
        return self.t0 + self.scenario.wall(hour)

    def all_done(self, http: Any) -> bool:
        if self.mode == "by_hand":
            for account, proc in self.procs.items():
                job = self.current[account]
                if job is not None and proc.poll() == 0:
                    self.done_by_hand.add(job.name)
            return len(self.done_by_hand) == len(self.jobs)
        reply = http.get("/api/v1/experiments", params={"limit": 200})
        reply.raise_for_status()
        items = reply.json()["items"]
        ours = [e for e in items if e["id"] in self.experiment_ids]
        return len(ours) == len(self.experiment_ids) and all(
            e["status"] == "succeeded" for e in ours
        )

    def run(self) -> ModeRun:
        self.prepare()
        self.t0 = time.time() + 1.0
        events: list[tuple[float, int, str, Any]] = []
        for seq, plan in enumerate(self.plan):
            heapq.heappush(events, (self.wall_at(plan.start), seq, "start", plan))
            if plan.how != "over":
                heapq.heappush(events, (self.wall_at(plan.end), seq, "end", plan))
        if self.mode == "by_hand":
            hour, seq = 0.0, len(self.plan)
            while (hour := next_check(self.scenario, hour + 1e-6)) < self.scenario.hours:
                seq += 1
                heapq.heappush(events, (self.wall_at(hour), seq, "check", None))
        stop_at = self.wall_at(self.scenario.hours)
        http = self.cp.client() if self.cp is not None else None
        finished = False
        next_poll = 0.0
        while events and events[0][0] < stop_at:
            when, _, what, plan = heapq.heappop(events)
            while time.time() < when:
                if time.time() >= next_poll:
                    next_poll = time.time() + 1.0
                    if self.all_done(http):
                        finished = True
                        break
                time.sleep(min(0.05, max(0.0, when - time.time())))
            if finished:
                break
            if what == "start":
                self.start(plan, when)
            elif what == "end":
                self.end(plan)
            else:
                self.check_by_hand()
        while not finished and time.time() < stop_at:
            finished = self.all_done(http)
            time.sleep(0.5)
        ended = time.time()
        for lived in self.alive.values():
            lived.ended = ended
        for notebook in self.notebooks.values():
            notebook.kill()  # a sleeping machine's stopped processes too: SIGKILL needs no wake
        experiments = self._experiments(http) if http is not None else []
        return ModeRun(
            mode=self.mode,
            t0=self.t0,
            ended=ended,
            sessions=sorted(self.lived.values(), key=lambda s: s.started),
            ledger=read_ledger(self.ledger),
            experiments=experiments,
            finished_all=finished,
        )

    def _experiments(self, http: Any) -> list[dict[str, Any]]:
        time.sleep(SETTLE_SECONDS)
        bodies = []
        for experiment_id in self.experiment_ids:
            reply = http.get(f"/api/v1/experiments/{experiment_id}")
            reply.raise_for_status()
            bodies.append(reply.json())
        return bodies


def read_ledger(folder: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line cut by SIGKILL
                events.append({**json.loads(line), "run": path.stem})
    return events


def run_mode(
    scenario: Scenario,
    seed: int,
    mode: str,
    *,
    cp_venv: Path,
    platform: Path,
    wheels: Path,
    logs: Path,
) -> ModeRun:
    """``mode`` of ``scenario`` in a topology of its own, removed afterwards."""
    logs.mkdir(parents=True, exist_ok=True)
    with hosts.topology() as topo:
        cp: ControlPlane | None = None
        hidden = hidden_paths()
        if mode != "by_hand":
            cp = ControlPlane(
                topo.control_plane,
                cp_venv,
                topo.run_dir / "cp",
                logs,
                settings=control_plane_settings(scenario),
            )
            cp.start()
            hidden = hidden_paths(cp.private, cp.venv.resolve())
        try:
            notebooks = {}
            wheel_url = worker_wheel_url(cp) if cp is not None else ""
            for account in scenario.accounts:
                notebook = make_notebook(topo, account.name, hidden, platform, wheels)
                if cp is not None:
                    installed = notebook.install_worker(wheel_url)
                    if installed.returncode != 0:
                        raise RuntimeError(f"worker install failed: {installed.stderr[-2000:]}")
                notebooks[account.name] = notebook
            driver = Driver(scenario, seed, mode, topo, notebooks, cp, logs)
            return driver.run()
        finally:
            if cp is not None:
                cp.stop()


def worker_wheel_url(cp: ControlPlane) -> str:
    """What a bootstrap cell pip-installs: the worker wheel at the control plane's URL."""
    reply = cp.client().get("/api/v1/bootstrap/kaggle")
    reply.raise_for_status()
    url: str = reply.json()["pip"]
    return url
