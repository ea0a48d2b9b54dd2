"""``make mutate``: mutation testing of the kernels and the region/ranking/store code.

Runs `cosmic-ray <https://cosmic-ray.readthedocs.io>`_ in a scratch copy of
the tree (``.mutate/src``), never in the working tree: cosmic-ray edits the
source in place, one mutant at a time, and a killed run would otherwise leave
a mutant behind.  The copy is imported through ``PYTHONPATH`` (with
``gwfollow/kernels`` and ``gwfollow/defaults`` linked to ``kernels/`` and
``config/`` as the installed package maps them), so the project's virtual
environment serves unchanged.

Each mutant runs only the fast test files that exercise its module (see
``SUITES``), stopping at the first failure.  A full run over ``kernels/``
is thousands of mutants; ``--sample N`` draws a fixed, seeded sample of the
mutants instead (the same sample for the same source), and a score over a
sample is reported as such.

Usage::

    make mutate                                  # every suite, every mutant
    make mutate MUTATE_ARGS="--suite kernels --sample 60"
    python tests/mutation/mutate.py --rev f8f4a0d --suite kernels --sample 60 --work .mutate-before
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tarfile
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Slow tests left out of the mutation runs (whole real maps, flat nside-2048 maps):
#: minutes each on two loaded cores, for every surviving mutant.
SLOW = ("not flat_map and not equals_mocpy_on_real and not exclude_equals_ligo_skymap_greedy_region"
        " and not probability_in_moc_matches_mocpy")

#: suite -> (module paths mutated, test files and pytest options that exercise them; fast, offline).
SUITES: dict[str, tuple[list[str], list[str]]] = {
    "kernels": (["kernels"], [
        "tests/test_kernels_ranges.py", "tests/test_kernels_sort.py", "tests/test_kernels_healpix.py",
        "tests/test_kernels_geometry.py", "tests/test_credible.py", "-k", SLOW,
    ]),
    "regions": (["gwfollow/regions/moc.py", "gwfollow/regions/mocio.py", "gwfollow/regions/coverage.py"], [
        "tests/test_credible.py", "tests/test_coverage.py", "tests/test_kernels_ranges.py",
    ]),
    "ranking": (["gwfollow/targets/rank.py"], ["tests/test_rank.py", "tests/test_targets.py"]),
    "store": (["gwfollow/store.py"], ["tests/test_store.py", "tests/test_pipeline.py"]),
}


def _tracked_files(rev: str | None) -> bytes:
    """A tar archive of the tree: ``rev`` from git, or the working tree's files."""
    if rev is not None:
        return subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                              check=True, capture_output=True).stdout
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for n in names:
            if n and (ROOT / n).is_file():
                tar.add(ROOT / n, arcname=n)
    return buf.getvalue()


def prepare(work: Path, rev: str | None) -> Path:
    """Lay a fresh copy of the tree in ``work/src``; link the shared data beside it."""
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(_tracked_files(rev)), mode="r") as tar:
        tar.extractall(src, filter="data")
    (src / "gwfollow" / "kernels").symlink_to("../kernels")
    (src / "gwfollow" / "defaults").symlink_to("../config")
    shared = ROOT.parent / "shared"
    link = work / "shared"
    if shared.is_dir() and not link.exists():
        link.symlink_to(shared.resolve())
    return src


def write_config(work: Path, modules: list[str], tests: list[str], timeout: float) -> Path:
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                            "-p", "no:xdist", "-o", "addopts=", *tests])
    cfg = work / "cosmic-ray.toml"
    cfg.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(modules)}\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(cmd)}\n\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n")
    return cfg


def sample(session: Path, n: int, seed: int) -> tuple[int, int]:
    """Mark all but a seeded sample of ``n`` mutants as skipped; returns (kept, total)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        key = {w.job_id: json.dumps([[m.module_path.as_posix(), m.operator_name, m.occurrence]
                                     for m in w.mutations]) for w in items}
        ordered = sorted(items, key=lambda w: key[w.job_id])
        keep = {w.job_id for w in random.Random(seed).sample(ordered, min(n, len(ordered)))}
        db.set_multiple_results([w.job_id for w in items if w.job_id not in keep],
                                WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not in the sample"))
        return len(keep), len(items)


def summary(session: Path) -> dict[str, object]:
    """Killed/survived counts, the score and the surviving mutants."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed, survived, other = 0, [], 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome == WorkerOutcome.NORMAL and result.test_outcome == TestOutcome.SURVIVED:
                m = item.mutations[0]
                survived.append(f"{m.module_path.as_posix()}:{m.start_pos[0]} {m.operator_name.split('/')[-1]}"
                                f" #{m.occurrence}")
            elif result.test_outcome in (TestOutcome.KILLED, TestOutcome.INCOMPETENT) or \
                    result.worker_outcome == WorkerOutcome.ABNORMAL:
                killed += 1
            else:
                other += 1
        pending = sum(1 for _ in db.pending_work_items)
    done = killed + len(survived)
    return {"killed": killed, "survived": len(survived), "other": other, "pending": pending,
            "score": (killed / done) if done else None, "survivors": sorted(survived)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", action="append", choices=sorted(SUITES),
                    help="what to mutate (repeatable; default: all suites)")
    ap.add_argument("--sample", type=int, default=0, help="run only a seeded sample of N mutants per suite")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--rev", help="mutate this git revision instead of the working tree")
    ap.add_argument("--work", default=str(ROOT / ".mutate"), help="scratch directory (default .mutate)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant before it counts as killed")
    ap.add_argument("--report-only", action="store_true", help="print the summary of the last run")
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    suites = args.suite or sorted(SUITES)
    env = {**os.environ, "PYTHONPATH": str(work / "src"), "CI": "false"}
    results = {}
    if not args.report_only:
        src = prepare(work, args.rev)
        for name in suites:
            modules, tests = SUITES[name]
            tests = [t for t in tests if not t.startswith("tests/") or (src / t).exists()]
            cfg = write_config(work, modules, tests, args.timeout)
            session = work / f"{name}.sqlite"
            session.unlink(missing_ok=True)
            subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(cfg), str(session)],
                           cwd=src, env=env, check=True)
            if args.sample:
                kept, total = sample(session, args.sample, args.seed)
                print(f"{name}: {kept} of {total} mutants sampled (seed {args.seed})", flush=True)
            base = subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "baseline", str(cfg)],
                                  cwd=src, env=env)
            if base.returncode != 0:
                print(f"{name}: the tests fail on the unmutated copy; fix them first", file=sys.stderr)
                return 2
            subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "exec", str(cfg), str(session)],
                           cwd=src, env=env, check=True)
    for name in suites:
        session = work / f"{name}.sqlite"
        if session.exists():
            results[name] = summary(session)
            r = results[name]
            score = "n/a" if r["score"] is None else f"{100 * r['score']:.1f}%"
            print(f"{name}: {r['killed']} killed, {r['survived']} survived, {r['pending']} pending: score {score}")
            for s in r["survivors"]:
                print(f"  survived: {s}")
    (work / "summary.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
