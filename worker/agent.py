"""The agent loop: register, long-poll for work, run each job, report how it ended."""

from __future__ import annotations

import json
import logging
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from worker.checkpoints import CheckpointError, CheckpointRef, CheckpointStore
from worker.checkpoints.signed import open_attempt_store
from worker.client import ApiError, LeaseLost, Stopped, Unavailable, WorkerClient
from worker.code import BundleCache, CodeError
from worker.code import prepare as prepare_code
from worker.context import INPUTS_INDEX
from worker.deadline import Session, SessionOptions, SessionWatch, open_session
from worker.environment import EnvironmentFailed, Environments, JobEnvironment
from worker.logship import LogShipper
from worker.runner import JobFiles, JobProcess, Progress, contract_env, read_tail
from worker.tracking import wandb_env
from worker.workdirs import WorkDirs

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
MAX_REASON = 4000  # what the control plane keeps of a failure's reason
# Asks a fresh interpreter whether it can import a module (exit 0) or not (exit 1).
_FINDS_MODULE = (
    "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"
)


@dataclass
class AgentConfig:
    api: str
    token: str
    name: str
    work_dir: Path
    claim_wait: float = 30.0
    kill_grace: float = 30.0  # SIGTERM -> SIGKILL when the agent itself is stopping
    cancel_grace: float = 2.0  # the same for a canceled job, which need not checkpoint
    max_jobs: int | None = None  # exit after this many jobs (tests, one-shot sessions)
    host_overrides: dict[str, Any] | None = None
    session: SessionOptions = field(default_factory=SessionOptions)


class _Shutdown(BaseException):
    """Raised in the main thread by a stop signal while it waits for work."""


class Uploader(threading.Thread):
    """Uploads staged checkpoints in order, off the job's critical path."""

    def __init__(self, store: CheckpointStore, *, experiment_id: int, attempt: int) -> None:
        super().__init__(name="baton-uploader", daemon=True)
        self.store = store
        self.experiment_id = experiment_id
        self.attempt = attempt
        self.pending: queue.Queue[tuple[int, Path] | None] = queue.Queue()
        self.latest: CheckpointRef | None = None
        self.uploaded = threading.Event()

    def run(self) -> None:
        while (item := self.pending.get()) is not None:
            step, directory = item
            try:
                ref = self.store.upload(
                    experiment_id=str(self.experiment_id),
                    attempt=self.attempt,
                    step=step,
                    source=directory,
                )
            except Exception:
                log.exception("upload of checkpoint step %s failed", step)
                continue
            shutil.rmtree(directory, ignore_errors=True)
            self.latest = ref
            self.uploaded.set()
            log.info("checkpoint step %s uploaded as %s", step, ref.key)

    def finish(self) -> CheckpointRef | None:
        """Wait for everything queued so far, then stop."""
        self.pending.put(None)
        self.join()
        return self.latest


class Attempt:
    """One claimed job, from download of its resume point to the final report."""

    def __init__(self, agent: Agent, grant: dict[str, Any]) -> None:
        self.agent = agent
        self.grant = grant
        self.experiment_id: int = grant["experiment_id"]
        self.number: int = grant["attempt"]
        self.token: str = grant["lease_token"]
        self.directory = agent.workdirs.attempt(
            control_plane=agent.control_plane,
            experiment_id=self.experiment_id,
            attempt=self.number,
            lease_token=self.token,
        )
        self.files = JobFiles(self.directory.path, output_dir=self.directory.output)
        self.progress = Progress()
        self.lease_lost = threading.Event()
        self.canceled = threading.Event()
        self.stop_requested = threading.Event()
        self.done = threading.Event()
        self.store = open_attempt_store(
            grant["checkpoint_url"], client=agent.client, lease_token=self.token
        )
        self.uploader = Uploader(self.store, experiment_id=self.experiment_id, attempt=self.number)
        self.job: JobProcess | None = None
        self.code_commit: str | None = None  # what the experiment's git ref resolved to

    # --- the run --------------------------------------------------------------------------

    def run(self) -> None:
        log.info(
            "experiment %s attempt %s (%s): starting",
            self.experiment_id,
            self.number,
            self.grant["kind"],
        )
        try:
            self._run()
        finally:
            self._cleanup()

    def _run(self) -> None:
        self.files.create()
        # Before any setup: pip's output belongs in the job's log on the control plane, and
        # fetching code or installing requirements can take longer than a lease.
        shipper = LogShipper(self.agent.client, path=self.files.log, lease_token=self.token)
        shipper.start()
        beat = threading.Thread(target=self._heartbeat_loop, name="baton-heartbeat", daemon=True)
        beat.start()
        try:
            resume_step = self._download_resume_point()
            self._download_inputs()
        except CheckpointError as exc:
            self._abort(beat, shipper, reason=f"cannot resume: {exc}")
            return
        try:
            environment = self._prepare_code_and_environment()
        except (CodeError, EnvironmentFailed) as exc:
            # The experiment's own problem (a bad ref, a requirement pip cannot install):
            # the attempt fails and counts against max_attempts, like a failing job.
            self._abort(beat, shipper, reason=str(exc))
            return
        self.files.config.write_text(json.dumps(self.grant["config"]))
        self.job = self._spawn(resume_step, environment)
        self.uploader.start()
        try:
            exit_code = self._supervise(self.job)
        finally:
            self.done.set()
        self._drain(self.job)
        final = self.uploader.finish()
        beat.join()
        shipper.finish()  # before the final report: after it, the lease takes no more output
        self._conclude(exit_code, final)

    def _abort(self, beat: threading.Thread, shipper: LogShipper, *, reason: str) -> None:
        """End an attempt whose job never started: report it failed with its log so far."""
        log.error("experiment %s attempt %s: %s", self.experiment_id, self.number, reason)
        self.done.set()
        self.uploader.uploaded.set()  # wakes the heartbeat loop, which then sees done
        beat.join()
        shipper.finish()
        if self.lease_lost.is_set():
            log.warning("the lease was lost meanwhile; not reporting")
        else:
            fields = self._report_fields(None)
            self._report(
                "fail", reason=reason[:MAX_REASON], log_tail=read_tail(self.files.log), **fields
            )

    @property
    def _code_dir(self) -> Path:
        return self.files.root / "code"

    def _prepare_code_and_environment(self) -> JobEnvironment:
        """Fetch the code into the attempt's dir and build the environment the job runs in."""
        code = self.grant.get("code")
        code_dir = self._code_dir if code else None
        if code and code_dir is not None:
            self.code_commit = prepare_code(
                code, code_dir, cache=self.agent.bundles, log_file=self.files.log
            )
        requirements = list(self.grant.get("requirements") or [])
        package = self.grant.get("package_wheel")
        entrypoint = self.grant.get("entrypoint")
        if package and entrypoint and not self._importable(entrypoint.split(".")[0]):
            requirements.append(package)  # e.g. baton_ml for ml.* kinds on a bare notebook
        return self.agent.environments.prepare(requirements, code_dir=code_dir, log=self.files.log)

    def _importable(self, module: str) -> bool:
        """Whether the worker's own python, where the job would run, can import ``module``."""
        done = subprocess.run(
            [sys.executable, "-c", _FINDS_MODULE, module],
            cwd=self._job_cwd(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
        return done.returncode == 0

    def _job_cwd(self) -> Path:
        workdir = self.grant["config"].get("workdir") if self.grant["kind"] == "command" else None
        if workdir:  # a single-machine option: a directory on this worker's own disk
            return Path(workdir).expanduser()
        return self._code_dir if self.grant.get("code") else self.files.root

    def _download_resume_point(self) -> int | None:
        resume = self.grant.get("resume")
        if not resume:
            return None
        ref = CheckpointRef.from_key(resume["key"])
        self.store.download(ref, self.files.resume)
        log.info("resuming from checkpoint %s (step %s)", ref.key, ref.step)
        return int(resume["step"])

    def _download_inputs(self) -> None:
        """Fetch each prerequisite's final checkpoint and describe them in inputs.json."""
        entries = []
        for item in self.grant.get("inputs") or []:
            directory = None
            if item.get("checkpoint"):
                directory = self.files.inputs / str(item["experiment_id"])
                self.store.download(CheckpointRef.from_key(item["checkpoint"]["key"]), directory)
            entries.append({**item, "directory": str(directory) if directory else None})
        self.files.inputs.mkdir(parents=True, exist_ok=True)
        (self.files.inputs / INPUTS_INDEX).write_text(json.dumps(entries))

    def _spawn(self, resume_step: int | None, environment: JobEnvironment) -> JobProcess:
        config = self.grant["config"]
        extra_env: dict[str, str] = {}
        if self.grant["kind"] == "command":
            argv = ["/bin/sh", "-c", config["command"]]
            extra_env = dict(config.get("env") or {})
        else:
            argv = [environment.python, "-m", self.grant["entrypoint"]]
        # Named secrets win over config.env; the agent's own environment is not handed on.
        job_vars = {**extra_env, **(self.grant.get("secrets") or {})}
        env = contract_env(
            self.files,
            experiment_id=self.experiment_id,
            attempt=self.number,
            resume_step=resume_step,
            deadline=self.agent.deadline,
            extra={**wandb_env(experiment_id=self.experiment_id, environ=job_vars), **job_vars},
        )
        # The environment's bin dir first on PATH: a command's `python` is the venv's.
        return JobProcess(self.files, argv, env=environment.apply(env), cwd=self._job_cwd())

    def _supervise(self, job: JobProcess) -> int:
        while job.poll() is None:
            self._drain(job)
            if self.lease_lost.is_set():
                log.warning("lease lost: stopping the job at once")
                job.kill()
            elif self.canceled.is_set():
                log.info("experiment %s canceled: stopping the job", self.experiment_id)
                return job.stop(grace=self.agent.config.cancel_grace)
            elif self.agent.stopping.is_set() and not self.stop_requested.is_set():
                self.stop_requested.set()
                log.info("agent stopping: asking the job to checkpoint and exit")
                return job.stop(grace=self.agent.config.kill_grace)
            time.sleep(POLL_SECONDS)
        return job.wait()

    def _drain(self, job: JobProcess) -> None:
        for message in job.read_messages():
            kind = message.get("type")
            if kind == "progress":
                self.progress.step = message.get("step")
                self.progress.total = message.get("total")
                self.progress.metrics.update(message.get("metrics") or {})
            elif kind == "checkpoint":
                self.uploader.pending.put((int(message["step"]), Path(message["dir"])))
            elif kind == "result":
                self.progress.result = message.get("values") or {}

    # --- talking to the control plane -----------------------------------------------------

    def _checkpoint_report(self, ref: CheckpointRef | None) -> dict[str, Any] | None:
        return None if ref is None else {"key": ref.key, "step": ref.step}

    def _heartbeat_loop(self) -> None:
        interval = float(self.grant["heartbeat_seconds"])
        while not self.done.is_set():
            # Wake early after an upload, so the control plane learns the resume point at once.
            self.uploader.uploaded.wait(interval)
            self.uploader.uploaded.clear()
            if self.done.is_set():
                return
            self._heartbeat()

    def _report_fields(self, checkpoint: CheckpointRef | None) -> dict[str, Any]:
        return {
            "lease_token": self.token,
            "progress_step": self.progress.step,
            "progress_total": self.progress.total,
            "metrics": self.progress.metrics,
            "checkpoint": self._checkpoint_report(checkpoint),
            "code_commit": self.code_commit,
        }

    def _heartbeat(self) -> None:
        payload = self._report_fields(self.uploader.latest)
        try:
            reply = self.agent.client.heartbeat(payload)
        except LeaseLost as exc:
            log.warning("heartbeat refused: %s", exc.detail)
            self.lease_lost.set()
            return
        except (Unavailable, ApiError) as exc:
            # The control plane is down or confused: keep the job running, try next beat.
            log.warning("heartbeat failed (%s); the job keeps running", exc)
            return
        if reply.get("action") == "cancel":
            self.canceled.set()

    def _conclude(self, exit_code: int, final: CheckpointRef | None) -> None:
        if self.lease_lost.is_set():
            log.warning(
                "experiment %s attempt %s: lease was lost; not reporting",
                self.experiment_id,
                self.number,
            )
            return
        fields = self._report_fields(final)
        fields["log_tail"] = self.job.log_tail() if self.job is not None else None
        if self.canceled.is_set():
            self._report("release", reason="canceled", **fields)
        elif self.stop_requested.is_set() and (exit_code != 0 or self.progress.result is None):
            self._report("release", reason="preempted", detail=self.agent.stop_reason, **fields)
        elif exit_code == 0:
            self._report("complete", result=self.progress.result or {}, **fields)
        else:
            self._report(
                "fail", exit_code=exit_code, reason=f"job exited with code {exit_code}", **fields
            )

    def _report(self, verb: str, **fields: Any) -> None:
        payload = {k: v for k, v in fields.items() if v is not None}
        payload["lease_token"] = self.token
        try:
            reply = self.agent.client.finish(verb, payload, give_up=self.agent.give_up)
            log.info(
                "experiment %s attempt %s: %s -> %s", self.experiment_id, self.number, verb, reply
            )
        except LeaseLost as exc:
            log.warning("%s refused, the lease is no longer ours: %s", verb, exc.detail)
        except Stopped:
            log.error("gave up reporting %s for experiment %s", verb, self.experiment_id)

    def _cleanup(self) -> None:
        # Its output was shipped and its checkpoints uploaded: nothing here is needed again.
        self.directory.remove()


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = WorkerClient(config.api, config.token)
        self.stopping = threading.Event()
        # Set only on a second signal: stop retrying the final report and exit.
        self.give_up = threading.Event()
        self.deadline: float | None = None
        self.session = Session()
        self.stop_reason = "worker stopping"
        self.worker_id: int | None = None
        self.control_plane = ""
        self.workdirs = WorkDirs(config.work_dir)
        self._busy = False
        # Shared by this agent's attempts: a bundle is downloaded, an environment built, once.
        self.bundles = BundleCache(config.work_dir / "bundles", self.client)
        self.environments = Environments(cache_dir=config.work_dir / "envs")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            self.give_up.set()
        self.stopping.set()
        log.info("signal %s: finishing up", signal.Signals(signum).name)
        if not self._busy:
            raise _Shutdown

    def _end_session(self, reason: str) -> None:
        """The session ends soon: stop as on SIGTERM (checkpoint, upload, release), then exit."""
        log.warning("%s: releasing work and exiting", reason)
        self.stop_reason = reason
        self.stopping.set()

    def register(self) -> int:
        overrides = self.config.host_overrides or {}
        info, self.session = open_session(
            name=self.config.name, overrides=overrides, options=self.config.session
        )
        self.deadline = self.session.deadline
        reply = self.client.register(info, stop=self.stopping)
        self.worker_id = int(reply["id"])
        self.control_plane = str(reply["control_plane"])
        log.info("registered as worker %s (%s)", self.worker_id, info.get("platform"))
        return self.worker_id

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        jobs = 0
        try:
            worker_id = self.register()
            self.workdirs.sweep()
            SessionWatch(self.session, on_end=self._end_session, stopped=self.stopping).start()
            while not self.stopping.is_set():
                if self.config.max_jobs is not None and jobs >= self.config.max_jobs:
                    break
                if self.session.closing():  # no time left to finish or checkpoint new work
                    break
                grant = self._claim(worker_id)
                if grant is None:
                    if self.session.idle_too_long():  # a launched kernel should not idle on quota
                        break
                    continue
                self._busy = True
                try:
                    Attempt(self, grant).run()
                finally:
                    self._busy = False
                    self.session.last_work = time.time()
                jobs += 1
        except (_Shutdown, Stopped):
            pass
        except ApiError as exc:
            log.error("the control plane refused this worker: %s", exc)
            return 2
        finally:
            self.client.close()
        log.info("worker stopped after %s job(s)", jobs)
        return 0

    def _claim(self, worker_id: int) -> dict[str, Any] | None:
        try:
            wait = self.session.claim_wait(self.config.claim_wait)
            return self.client.claim(worker_id, wait=wait, stop=self.stopping)
        except ApiError as exc:
            if exc.status == 404:  # the control plane forgot us (new database): register again
                self.register()
                return None
            raise
