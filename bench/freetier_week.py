"""A free-tier week: how much of the GPU time free accounts give becomes kept training steps.

Drives the real control plane (from the built wheel) and real agents (pip-installed from it)
on notebook hosts in network namespaces (tests/support: hosts, cp_host, notebooks, install)
through a scenario of platform sessions (configs/freetier/*.yaml; format in docs/freetier.md),
in three modes (one after the other, or with --parallel at once), same scenario and seed:
by hand (no Baton), Baton with deadline awareness off (lease expiry only), Baton as shipped.
Needs root (namespaces, users).

    sudo PYTHONPATH=$PWD .venv/bin/python bench/freetier_week.py \\
        --scenario configs/freetier/week.yaml --seed 1 --parallel --json week.json --png week.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.freetier.drive import MODES, ModeRun, run_mode
from bench.freetier.measure import measure
from bench.freetier.report import read_raw, summary, table, write_json
from bench.freetier.scenario import Scenario, ScenarioError, load
from bench.freetier.timeline import draw
from tests.support import hosts
from tests.support.install import build_wheel, control_plane_venv
from tests.support.notebooks import BARE_PLATFORM, notebook_wheelhouse, platform_site, wheelhouse

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every measure here")
    parser.add_argument("--png", type=Path, help="draw the timeline here")
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    parser.add_argument("--logs", type=Path, help="keep the agents' and servers' logs here")
    parser.add_argument(
        "--measure-again",
        type=Path,
        metavar="JSON",
        help="run nothing: measure (and draw) again from the raw records of an earlier --json",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the modes at once, each in its own topology (one wall clock for all three)",
    )
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(MODES)})")
    try:
        scenario = load(args.scenario)
    except ScenarioError as exc:
        parser.error(f"--scenario: {exc}")
    if args.measure_again:
        seed, recorded_walls, recorded = read_raw(args.measure_again)
        report(scenario, seed, [recorded[m] for m in modes if m in recorded], recorded_walls, args)
        return 0
    if why := hosts.unavailable():
        print(f"freetier_week: cannot run here: {why}", file=sys.stderr)
        return 2
    logs = args.logs or Path(tempfile.mkdtemp(prefix="freetier-logs-"))
    wheels = wheelhouse([*BARE_PLATFORM])
    cp_venv = control_plane_venv(build_wheel(REPO, logs / "wheel"))
    print(
        f"scenario {args.scenario} seed {args.seed}: {scenario.hours:g} platform h, "
        f"{scenario.scale_text}; logs in {logs}",
        flush=True,
    )
    platform, nb_wheels = platform_site(BARE_PLATFORM, wheels), notebook_wheelhouse(wheels)
    walls: dict[str, float] = {}

    def one(mode: str) -> ModeRun:
        began = time.monotonic()
        run = run_mode(
            scenario,
            args.seed,
            mode,
            cp_venv=cp_venv,
            platform=platform,
            wheels=nb_wheels,
            logs=logs / mode,
        )
        walls[mode] = time.monotonic() - began
        return run

    with ThreadPoolExecutor(max_workers=len(modes) if args.parallel else 1) as pool:
        runs = dict(zip(modes, pool.map(one, modes), strict=True))
    report(scenario, args.seed, [runs[m] for m in modes], walls, args)
    return 0


def report(
    scenario: Scenario,
    seed: int,
    runs: list[ModeRun],
    walls: dict[str, float],
    args: argparse.Namespace,
) -> None:
    results = [measure(scenario, run) for run in runs]
    for m in results:
        print(summary(scenario, m, walls[m.mode]))
    print(table(scenario, results))
    if args.json and not args.measure_again:
        write_json(args.json, scenario, seed, results, walls, {r.mode: r for r in runs})
    if args.png:
        draw(args.png, scenario, runs, results)


if __name__ == "__main__":
    sys.exit(main())
