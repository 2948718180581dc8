#!/usr/bin/env python
"""Mutation testing for visionattn (docs/testing.md); configuration in .ci/mutants.toml.

    python .ci/mutants.py run [GROUP ...] [--files GLOB ...] [--jobs N] [--fresh] [--ref REF]   mutmut by group
    python .ci/mutants.py report [GROUP ...]                                       score and survivors again
    python .ci/mutants.py hand [--only TEXT] [--ref HEAD]                          replay the hand-made mutants

Every command works in a private copy of the tree under build/mutants/ (the working tree as it is, or ``--ref``'s
commit for ``hand``), so the shared tree is never mutated. ``run`` writes mutmut's ``[tool.mutmut]`` section into
the copy's pyproject.toml: the group's files to mutate and only the test files that guard them.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    sys.exit("mutants.py needs Python >= 3.11 (tomllib)")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".ci" / "mutants.toml"
WORK = ROOT / "build" / "mutants"
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def load_config() -> dict:
    return tomllib.loads(CONFIG.read_text())


def tree_files() -> list[str]:
    """Tracked files plus untracked files git does not ignore: the working tree as the developer sees it."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return sorted(p for p in out.split("\0") if p and (ROOT / p).is_file())


def sync_tree(dest: Path, ref: str | None = None) -> None:
    """Copy the working tree (or commit ``ref``'s tree) into ``dest``: files with equal contents are skipped, files
    no longer in the tree removed; other things in ``dest`` (mutmut's ``mutants/``) are kept."""
    if ref is not None:
        with tempfile.TemporaryDirectory() as tmp:
            export_ref(ref, Path(tmp) / "tree")
            _sync(Path(tmp) / "tree", sorted(str(p.relative_to(Path(tmp) / "tree")) for p in
                                             (Path(tmp) / "tree").rglob("*") if p.is_file()), dest)
        return
    _sync(ROOT, tree_files(), dest)


def _sync(root: Path, files: list[str], dest: Path) -> None:
    files = set(files)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in files:
        src, dst = root / rel, dest / rel
        if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for sub in ("visionattn", "tests", "configs", "experiments"):
        for path in (dest / sub).rglob("*") if (dest / sub).exists() else []:
            rel = path.relative_to(dest).as_posix()
            if path.is_file() and rel not in files and "__pycache__" not in rel:
                path.unlink()


def export_ref(ref: str, dest: Path) -> None:
    """The tree of commit ``ref`` (``git archive``) in ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tempfile.TemporaryFile() as tmp:
        subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, stdout=tmp)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(dest, filter="data")


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def write_mutmut_section(copy: Path, mutate: list[str], tests: list[str], args: list[str] = ()) -> None:
    """The copy's pyproject.toml plus mutmut's section (any existing one replaced)."""
    text = (ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in text:
        head, _, rest = text.partition("[tool.mutmut]")
        after = rest.split("\n[", 1)
        text = head + ("[" + after[1] if len(after) > 1 else "")
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["visionattn"]\n'
        # tests read the default configs and experiment files from the checkout (visionattn/resources.py)
        'also_copy = ["configs", "experiments"]\n'
        f"only_mutate = {toml_list(mutate)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        f"pytest_add_cli_args = {toml_list(['-p', 'no:cacheprovider', '-q', '--timeout=600', *args])}\n"
        "mutate_only_covered_lines = false\n"
        "timeout_multiplier = 10.0\n"
        # torch is not fork-safe once its thread pools exist: fork the workers from a clean fork server
        'process_isolation = "forkserver"\n'
        'forkserver_warmup = "collect"\n'
        "use_git_change_detection = false\n"
    )
    (copy / "pyproject.toml").write_text(text)


def mutmut(copy: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **THREAD_ENV}
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=copy, env=env, check=check, text=True)


def summarize(group: str, copy: Path) -> dict:
    """Score and survivors of a group from mutmut's own result files."""
    proc = subprocess.run([sys.executable, "-m", "mutmut", "export-cicd-stats"], cwd=copy, capture_output=True,
                          text=True, env={**os.environ, **THREAD_ENV})
    stats_path = copy / "mutants" / "mutmut-cicd-stats.json"
    if proc.returncode != 0 or not stats_path.exists():
        return {"group": group, "error": proc.stderr[-2000:]}
    stats = json.loads(stats_path.read_text())
    results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=copy,
                             capture_output=True, text=True, env={**os.environ, **THREAD_ENV}).stdout
    survivors = [line.strip() for line in results.splitlines() if line.strip().endswith(("survived", "no tests"))]
    judged = stats.get("killed", 0) + stats.get("survived", 0) + stats.get("timeout", 0)
    score = (stats.get("killed", 0) + stats.get("timeout", 0)) / judged if judged else float("nan")
    return {"group": group, **stats, "score": score, "survivors": survivors}


def print_summary(s: dict) -> None:
    if "error" in s:
        print(f"[{s['group']}] no results: {s['error']}")
        return
    keys = ("killed", "survived", "timeout", "no_tests", "suspicious", "skipped", "segfault", "total")
    counts = ", ".join(f"{k} {s[k]}" for k in keys if k in s)
    print(f"[{s['group']}] score {s['score']:.1%} ({counts})")
    for line in s["survivors"]:
        print(f"    {line}")


def cmd_run(args) -> int:
    cfg = load_config()["groups"]
    groups = args.groups or list(cfg)
    unknown = [g for g in groups if g not in cfg]
    if unknown:
        sys.exit(f"unknown group(s) {unknown}; expected some of {list(cfg)}")
    summaries = []
    for group in groups:
        copy = WORK / group
        if args.fresh and copy.exists():
            shutil.rmtree(copy)
        sync_tree(copy, args.ref)
        mutate = args.files or cfg[group]["mutate"]
        write_mutmut_section(copy, mutate, cfg[group]["tests"], cfg[group].get("args", []))
        print(f"== {group}: mutating {mutate}; tests {cfg[group]['tests']} (in {copy})", flush=True)
        start = time.monotonic()
        extra = ["--max-children", str(args.jobs)]
        proc = mutmut(copy, "run", *extra, *args.mutants, check=False)
        print(f"== {group}: mutmut exited {proc.returncode} after {time.monotonic() - start:.0f} s", flush=True)
        summaries.append(summarize(group, copy))
        print_summary(summaries[-1])
    (WORK / "summary.json").write_text(json.dumps(summaries, indent=1))
    return 0


def cmd_report(args) -> int:
    groups = args.groups or [p.name for p in sorted(WORK.iterdir()) if (p / "mutants").is_dir()]
    for group in groups:
        print_summary(summarize(group, WORK / group))
    return 0


def run_pytest(copy: Path, tests: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **THREAD_ENV}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=copy,
                          env=env, capture_output=True, text=True)


def cmd_hand(args) -> int:
    mutants = [m for m in load_config()["hand"] if not args.only or args.only.lower() in m["name"].lower()]
    copy = WORK / "hand"
    sync_tree(copy, args.ref)
    baseline: dict[tuple, bool] = {}
    failures = 0
    for m in mutants:
        path = copy / m["file"]
        original = path.read_text()
        count = original.count(m["old"])
        if count != 1:
            print(f"NOT APPLIED  {m['name']}: `old` occurs {count} times in {m['file']} (the code moved?)")
            failures += 1
            continue
        key = tuple(m["tests"])
        if key not in baseline:
            proc = run_pytest(copy, m["tests"])
            baseline[key] = proc.returncode == 0
            if not baseline[key]:
                print(f"BASELINE FAILS for {m['tests']}:\n{proc.stdout[-3000:]}")
        if not baseline[key]:
            failures += 1
            continue
        path.write_text(original.replace(m["old"], m["new"]))
        try:
            proc = run_pytest(copy, m["tests"])
        finally:
            path.write_text(original)
        killed = proc.returncode != 0
        failures += not killed
        first = next((line for line in proc.stdout.splitlines() if line.startswith("FAILED")), "")
        print(f"{'killed  ' if killed else 'SURVIVED'}  {m['name']}  ({m['file']})  {first[:160]}", flush=True)
    print(f"{len(mutants) - failures}/{len(mutants)} hand mutants killed")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="mutmut on groups of .ci/mutants.toml")
    run.add_argument("groups", nargs="*")
    run.add_argument("--files", nargs="+", help="mutate only these globs (within the group's tests)")
    run.add_argument("--mutants", nargs="+", default=[], help="mutant names or globs for `mutmut run`")
    run.add_argument("--jobs", type=int, default=1, help="mutants tested in parallel (default 1)")
    run.add_argument("--fresh", action="store_true", help="forget cached results of these groups")
    run.add_argument("--ref", help="mutate this commit's tree (git archive) instead of the working tree")
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="print the score and survivors of groups already run")
    report.add_argument("groups", nargs="*")
    report.set_defaults(func=cmd_report)
    hand = sub.add_parser("hand", help="replay the hand-made mutants; exit 1 unless every one is killed")
    hand.add_argument("--only", help="only mutants whose name contains this text")
    hand.add_argument("--ref", help="test this commit's tree (git archive) instead of the working tree")
    hand.set_defaults(func=cmd_hand)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
