"""The agent loop: register, long-poll for work, run each job, report how it ended."""

from __future__ import annotations

import json
import logging
import os
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
from worker.jobenv import model_cache_env
from worker.logship import LogShipper
from worker.margin import StopTimer
from worker.messages import (
    CheckpointReady,
    Invalid,
    Message,
    ProgressUpdate,
    decode,
    merge_metrics,
)
from worker.runner import (
    MAX_LINE_BYTES,
    JobFiles,
    JobProcess,
    Overlong,
    Progress,
    contract_env,
    read_tail,
)
from worker.tracking import wandb_env
from worker.workdirs import WorkDirs

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
MAX_REASON = 4000  # what the control plane keeps of a failure's reason
# Problems with a job's messages noted (agent log and job log) per attempt; past this, silence.
MAX_NOTES = 20
NOTE_PREFIX = "[baton] "
# Under the agent's work dir: the hub cache its jobs share (HF_HOME), kept between jobs.
MODEL_CACHE_DIR = "models"
FENCED_DETAIL = "control plane unreachable for a whole lease: the worker stopped its job"
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

    def __init__(
        self, store: CheckpointStore, *, experiment_id: int, attempt: int, stops: StopTimer
    ) -> None:
        super().__init__(name="baton-uploader", daemon=True)
        self.store = store
        self.stops = stops
        self.experiment_id = experiment_id
        self.attempt = attempt
        self.pending: queue.Queue[tuple[int, Path] | None] = queue.Queue()
        self.latest: CheckpointRef | None = None
        # The newest checkpoint whose upload failed, kept for one more try (after an outage).
        self.unsent: tuple[int, Path] | None = None
        self.uploaded = threading.Event()

    def run(self) -> None:
        while (item := self.pending.get()) is not None:
            self.upload(*item)

    def upload(self, step: int, directory: Path) -> None:
        began = time.monotonic()
        try:
            ref = self.store.upload(
                experiment_id=str(self.experiment_id),
                attempt=self.attempt,
                step=step,
                source=directory,
            )
        except Exception:
            log.exception("upload of checkpoint step %s failed", step)
            if self.unsent is None or step >= self.unsent[0]:
                self.unsent = (step, directory)
            return
        self.stops.upload(time.monotonic() - began)
        shutil.rmtree(directory, ignore_errors=True)
        if self.unsent is not None and self.unsent[0] <= step:
            self.unsent = None
        self.latest = ref
        self.uploaded.set()
        log.info("checkpoint step %s uploaded as %s", step, ref.key)

    def retry_unsent(self) -> CheckpointRef | None:
        """Once finished: another try for the newest checkpoint whose upload failed."""
        if self.unsent is not None and (self.latest is None or self.unsent[0] > self.latest.step):
            self.upload(*self.unsent)
        return self.latest

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
        # Resolved now, before the job runs: a job that swaps the folder for a symlink does
        # not move where its checkpoints may be.
        self.checkpoint_root = self.files.checkpoints.resolve()
        self.progress = Progress()
        self.heartbeat_seconds = float(grant["heartbeat_seconds"])
        self.lease_seconds = float(grant["lease_seconds"])
        # When the newest heartbeat the control plane took was sent: the lease holds at least
        # lease_seconds from then.
        self.answered_at = time.monotonic()
        self.lease_lost = threading.Event()
        self.fenced = threading.Event()  # no answer for a whole lease: the job was stopped
        self.refusal: str | None = None  # a heartbeat's 4xx: the attempt ends at once
        self.output_problem: str | None = None  # a message that makes the job's outcome unfit
        self._notes = 0
        self.canceled = threading.Event()
        self.stop_requested = threading.Event()
        self.done = threading.Event()
        self.store = open_attempt_store(
            grant["checkpoint_url"], client=agent.client, lease_token=self.token
        )
        # What this job's stops take, measured as it runs: the session's end waits for it.
        self.stops = StopTimer()
        self.uploader = Uploader(
            self.store, experiment_id=self.experiment_id, attempt=self.number, stops=self.stops
        )
        self.stop_began: float | None = None  # monotonic, when the job was asked to stop
        self.stop_expected: float | None = None  # what its stops measured then
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
        self.agent.session.stops = self.stops
        try:
            self._run()
        finally:
            self.agent.session.stops = None
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
        except Exception as exc:  # a setup bug of ours costs this attempt, not the agent
            log.exception("setting up experiment %s failed", self.experiment_id)
            self._abort(beat, shipper, reason=f"the worker could not set up the job: {exc!r}")
            return
        self.files.config.write_text(json.dumps(self.grant["config"]))
        self.job = self._spawn(resume_step, environment)
        self.uploader.start()
        try:
            exit_code = self._supervise(self.job)
            self._drain(self.job)
            # Heartbeats go on until the last upload is in: over a slow link (or while the
            # control plane restarts) a final upload can outlast the lease.
            final = self.uploader.finish()
            self._log_stop_time()
        finally:
            self._stop_heartbeats(beat)
        shipper.finish()  # before the final report: after it, the lease takes no more output
        self._conclude(exit_code, final)

    def _stop_heartbeats(self, beat: threading.Thread) -> None:
        self.done.set()
        self.uploader.uploaded.set()  # wakes the heartbeat loop, which then sees done
        beat.join()

    def _abort(self, beat: threading.Thread, shipper: LogShipper, *, reason: str) -> None:
        """End an attempt whose job never started: report it failed with its log so far."""
        log.error("experiment %s attempt %s: %s", self.experiment_id, self.number, reason)
        self._stop_heartbeats(beat)
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
            extra={
                **model_cache_env(self.agent.config.work_dir / MODEL_CACHE_DIR, os.environ),
                **wandb_env(experiment_id=self.experiment_id, environ=job_vars),
                **job_vars,
            },
        )
        # The environment's bin dir first on PATH: a command's `python` is the venv's.
        return JobProcess(self.files, argv, env=environment.apply(env), cwd=self._job_cwd())

    def _supervise(self, job: JobProcess) -> int:
        while job.poll() is None:
            self._drain(job)
            if self.lease_lost.is_set() or self.refusal is not None:
                log.warning("the lease is not ours to keep: stopping the job at once")
                job.kill()
            elif self.canceled.is_set():
                log.info("experiment %s canceled: stopping the job", self.experiment_id)
                return job.stop(grace=self.agent.config.cancel_grace)
            elif self.agent.stopping.is_set() and not self.stop_requested.is_set():
                self.stop_requested.set()
                self.stop_began = time.monotonic()
                self.stop_expected = self.stops.stop_seconds()
                log.info("agent stopping: asking the job to checkpoint and exit")
                return job.stop(grace=self.agent.config.kill_grace)
            elif time.monotonic() - self.answered_at >= self.lease_seconds:
                # Self-fencing: the lease may have run out and the job been handed to another
                # worker. Stopped within one heartbeat more, two copies never run for long.
                self.fenced.set()
                log.warning(
                    "no heartbeat answered for %.0fs (the lease): asking the job to checkpoint "
                    "and stop",
                    self.lease_seconds,
                )
                return job.stop(grace=self.heartbeat_seconds)
            if self.agent.stopping.is_set():
                time.sleep(POLL_SECONDS)
            else:  # a session's end is acted on at once, not a poll later
                self.agent.stopping.wait(POLL_SECONDS)
        return job.wait()

    def _log_stop_time(self) -> None:
        """How long the stop took against what was measured beforehand: the margin's check."""
        if self.stop_began is not None:
            expected = self.stop_expected
            log.info(
                "the stop took %.2fs to the last upload (measured beforehand: %s)",
                time.monotonic() - self.stop_began,
                "nothing" if expected is None else f"{expected:.2f}s",
            )

    def _drain(self, job: JobProcess) -> None:
        """Act on the job's new messages; bad ones are noted and dropped (worker.messages)."""
        for line in job.read_lines():
            if isinstance(line, Overlong):
                self._problem(
                    Invalid(
                        f"a progress-channel line of {line.size:,} bytes (over "
                        f"{MAX_LINE_BYTES:,}) was skipped",
                        fatal=True,
                    )
                )
            elif line.strip():
                try:
                    self._apply(decode(line, checkpoint_root=self.checkpoint_root))
                except Invalid as exc:
                    self._problem(exc)

    def _apply(self, message: Message) -> None:
        dropped: list[str] = []
        if isinstance(message, ProgressUpdate):
            self.stops.progress(message.step, time.monotonic())
            if message.step is not None:
                self.progress.step = message.step
            if message.total is not None:
                self.progress.total = message.total
            dropped = message.dropped + merge_metrics(self.progress.metrics, message.metrics)
        elif isinstance(message, CheckpointReady):
            self.stops.checkpoint(time.monotonic())
            self.uploader.pending.put((message.step, message.directory))
        else:
            self.progress.result = message.values
            dropped = message.dropped
        for text in dropped:
            self._note(f"left out: {text}")

    def _problem(self, problem: Invalid) -> None:
        if problem.fatal and self.output_problem is None:
            self.output_problem = problem.reason
        self._note(f"dropped a message: {problem.reason}")

    def _note(self, text: str) -> None:
        """Tell the agent's log and the job's own (which its owner reads) what was dropped."""
        self._notes += 1
        if self._notes > MAX_NOTES:
            return
        if self._notes == MAX_NOTES:
            text = "further problems with this job's messages are not noted"
        log.warning("experiment %s attempt %s: %s", self.experiment_id, self.number, text)
        with self.files.log.open("a", encoding="utf-8", errors="replace") as fh:
            fh.write(f"{NOTE_PREFIX}{text}\n")

    # --- talking to the control plane -----------------------------------------------------

    def _checkpoint_report(self, ref: CheckpointRef | None) -> dict[str, Any] | None:
        return None if ref is None else {"key": ref.key, "step": ref.step}

    def _heartbeat_loop(self) -> None:
        while not self.done.is_set():
            # Wake early after an upload, so the control plane learns the resume point at once.
            self.uploader.uploaded.wait(self.heartbeat_seconds)
            self.uploader.uploaded.clear()
            # Once fenced, _reconnect does the talking; after a refusal there is nothing to say.
            if self.done.is_set() or self.fenced.is_set() or self._refused():
                return
            self._heartbeat()

    def _refused(self) -> bool:
        return self.lease_lost.is_set() or self.refusal is not None

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
        sent = time.monotonic()
        try:
            # An answer later than the lease is worth no more than none.
            reply = self.agent.client.heartbeat(payload, timeout=self.lease_seconds)
        except LeaseLost as exc:
            log.warning("heartbeat refused, the lease is no longer ours: %s", exc.detail)
            self.lease_lost.set()
            return
        except ApiError as exc:
            log.warning("heartbeat refused (%s): ending the attempt", exc)
            self.refusal = f"the control plane refused a heartbeat: {exc}"[:MAX_REASON]
            return
        except Unavailable as exc:
            # Down, or cut off: the job keeps running until a whole lease goes unanswered.
            log.warning("heartbeat unanswered (%s)", exc)
            return
        self.answered_at = max(self.answered_at, sent)
        if reply.get("action") == "cancel":
            self.canceled.set()

    def _reconnect(self) -> bool:
        """After self-fencing: heartbeat until the control plane answers; whether the lease is
        still ours (then its checkpoint is worth uploading and reporting)."""
        log.warning("self-fenced: waiting for the control plane to say whether the lease holds")
        while True:
            try:
                reply = self.agent.client.heartbeat(
                    self._report_fields(self.uploader.latest), timeout=self.lease_seconds
                )
            except ApiError as exc:  # LeaseLost included: it was re-leased or ended meanwhile
                log.warning("the lease did not survive the outage (%s): dropping the attempt", exc)
                return False
            except Unavailable:
                if self.agent.give_up.wait(self.heartbeat_seconds):
                    return False
                continue
            log.info("the control plane is back and the lease still ours")
            if reply.get("action") == "cancel":
                self.canceled.set()
            return True

    def _conclude(self, exit_code: int, final: CheckpointRef | None) -> None:
        if self.fenced.is_set():
            if not self._reconnect():
                return
            final = self.uploader.retry_unsent()
        if self.lease_lost.is_set():
            log.warning(
                "experiment %s attempt %s: lease was lost; not reporting",
                self.experiment_id,
                self.number,
            )
            return
        fields = self._report_fields(final)
        fields["log_tail"] = self.job.log_tail() if self.job is not None else None
        stopped = self.stop_requested.is_set() or self.fenced.is_set()
        if self.refusal is not None:
            self._report("fail", reason=self.refusal, **fields)
        elif self.canceled.is_set():
            self._report("release", reason="canceled", **fields)
        elif stopped and (exit_code != 0 or self.progress.result is None):
            detail = FENCED_DETAIL if self.fenced.is_set() else self.agent.stop_reason
            self._report("release", reason="preempted", detail=detail, **fields)
        elif exit_code == 0 and self.output_problem is not None:
            self._report("fail", exit_code=0, reason=self.output_problem, **fields)
        elif exit_code == 0:
            self._report("complete", result=self.progress.result or {}, **fields)
        else:
            self._report(
                "fail", exit_code=exit_code, reason=f"job exited with code {exit_code}", **fields
            )

    def _report(self, verb: str, **fields: Any) -> None:
        payload = {k: v for k, v in fields.items() if v is not None}
        payload["lease_token"] = self.token
        report(self.agent.client, verb, payload, give_up=self.agent.give_up)

    def _cleanup(self) -> None:
        # Its output was shipped and its checkpoints uploaded: nothing here is needed again.
        self.directory.remove()


def report(
    client: WorkerClient, verb: str, payload: dict[str, Any], *, give_up: threading.Event
) -> None:
    """complete / fail / release an attempt. A report the control plane refuses (4xx) becomes a
    bare ``fail`` carrying its answer, so the attempt ends with the reason instead of hanging
    until its lease runs out."""
    while True:
        try:
            reply = client.finish(verb, payload, give_up=give_up)
            # Not the whole reply: it holds the experiment's result, up to megabytes of it.
            log.info("%s -> experiment %s %s", verb, reply.get("id"), reply.get("status"))
        except LeaseLost as exc:
            log.warning("%s refused, the lease is no longer ours: %s", verb, exc.detail)
        except Stopped:
            log.error("gave up reporting %s", verb)
        except ApiError as exc:
            if verb == "fail" and payload.keys() <= {"lease_token", "reason"}:
                log.error("the control plane refused even a bare failure report: %s", exc)
                return
            log.error("%s refused (%s): reporting the attempt failed instead", verb, exc)
            reason = f"the control plane refused the worker's {verb} report: {exc}"
            payload = {"lease_token": payload["lease_token"], "reason": reason[:MAX_REASON]}
            verb = "fail"
            continue
        return


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
