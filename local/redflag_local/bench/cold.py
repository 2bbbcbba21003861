"""Cold start: importing each handler (``functions/<name>/app.py``, which builds its service and so its
boto3 clients) in a fresh interpreter, against ``import boto3; boto3.client('dynamodb')``.

The interpreter sees what a Lambda sees, not this checkout's virtualenv: ``python -S`` (no
site-packages) with, in this order (as on Lambda, a layer comes before the runtime's packages):

- the function's folder (``/var/task``);
- a copy of the layer (``/opt/python``): the packages ``layers/redflag/requirements.txt`` resolves to,
  copied from this virtualenv (same pinned versions), and the ``redflag`` package;
- the runtime's own packages (``/var/runtime``): boto3, botocore and their dependencies, with their
  bytecode, as the managed runtime ships them;
- the standard library.

Two layers are compared: **as SAM's python3.13 builder made it** (every dependency, botocore and its
dependencies included, which then shadow the runtime's, and no ``.pyc``: ``/opt`` is read-only, so
Python compiles every module it imports on every cold start) and **as the makefile build makes it**
(nothing the runtime provides, every module compiled ahead: ``compileall --invalidation-mode
unchecked-hash``). Each measurement is a new process; runs are alternated, medians taken. The
environment is the function's (from the template, as the stand-in deploys it) plus what Lambda sets:
with ``LAMBDA_TASK_ROOT`` set, Powertools' Tracer is on and patches what it can, as on Lambda.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from redflag_local.standin.template import ROOT

# what the python3.13 managed runtime already has (the SDK and its dependencies)
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
LAMBDA_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "PYTHONDONTWRITEBYTECODE": "1",  # /opt and /var/task are read-only on Lambda
    "PATH": "/usr/bin:/bin",
}
PROBE = "import sys, time; sys.path[:0] = {paths!r}; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
BASELINE = "import boto3; boto3.client('dynamodb')"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> list[tuple[str, set[str]]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?", line)
        if m:
            out.append((m.group(1), {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}))
    return out


def layer_distributions(requirements: Path) -> set[str]:
    """Every distribution the layer's requirements resolve to (extras followed), by the metadata of
    what is installed here."""
    seen: set[str] = set()
    todo = _requirements(requirements)
    while todo:
        name, extras = todo.pop()
        key = _norm(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            marker = marker.strip()
            if "extra" in marker:
                wanted = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
                if not any(_norm(e) in {_norm(x) for x in extras} for e in wanted):
                    continue
            elif marker and not _marker_holds(marker):
                continue
            m = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?", spec)
            if m:
                todo.append((m.group(1), {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}))
    return seen


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker

        return Marker(marker).evaluate({"python_version": "3.13", "python_full_version": "3.13.0"})
    except Exception:
        return True


def _top_levels(dist_name: str) -> set[str]:
    dist = metadata.distribution(dist_name)
    tops = set()
    for f in dist.files or []:
        first = f.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__") or first.endswith(".pth"):
            continue
        tops.add(first)
    return tops


@dataclass
class Tree:
    """A Lambda-like filesystem: /var/task is the function folder; ``opt`` and ``runtime`` here."""

    root: Path
    opt: Path
    runtime: Path
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of .py/.so/data per tree

    def paths(self, function: str) -> list[str]:
        return [str(ROOT / "functions" / function), str(self.opt), str(self.runtime)]


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def build_trees(work: Path) -> dict[str, Tree]:
    """``before``: the layer as SAM's builder made it (all dependencies, no bytecode);
    ``after``: the makefile layer (runtime-provided packages left out, bytecode compiled)."""
    site = Path(metadata.distribution("pydantic").locate_file(""))
    dists = layer_distributions(ROOT / "layers" / "redflag" / "requirements.txt")
    provided = {_norm(d) for d in RUNTIME_PROVIDED}
    runtime = work / "runtime"
    runtime.mkdir(parents=True)
    for d in sorted(provided):
        for top in _top_levels(d):
            (runtime / top).symlink_to(site / top)  # the runtime's, bytecode included
    trees = {}
    for name, drop_provided, compiled in (("before", False, False), ("after", True, True)):
        opt = work / name / "python"
        opt.mkdir(parents=True)
        for d in sorted(dists):
            if drop_provided and d in provided:
                continue
            for top in _top_levels(d):
                if (site / top).exists():
                    _copy(site / top, opt / top)
        _copy(ROOT / "layers" / "redflag" / "redflag", opt / "redflag")
        if compiled:
            compileall.compile_dir(
                opt, quiet=1, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
            )
        tree = Tree(work / name, opt, runtime)
        tree.sizes["layer bytes"] = sum(p.stat().st_size for p in opt.rglob("*") if p.is_file())
        trees[name] = tree
    return trees


def probe(paths: list[str], stmt: str, env: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[float, str]:
    code = PROBE.format(paths=paths, stmt=stmt)
    out = subprocess.run([sys.executable, "-S", *extra, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"cold start probe failed: {out.stderr[-2000:]}")
    return float(out.stdout.split()[-1]), out.stderr


@dataclass
class Cold:
    baseline: float  # seconds, median
    handlers: dict[str, dict[str, float]]  # function folder -> tree -> seconds (median)
    repeat: dict[str, int]
    profile: dict[str, list[tuple[str, float]]]  # function -> top packages by self import time (ms)
    layer_bytes: dict[str, int]

    def ratio(self, function: str, tree: str = "after") -> float:
        return self.handlers[function][tree] / self.baseline


def importtime(paths: list[str], env: dict[str, str], top: int = 12) -> list[tuple[str, float]]:
    """Self import time per top-level package (ms), from ``python -X importtime``."""
    _, err = probe(paths, "import app", env, ("-X", "importtime"))
    by: dict[str, int] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|")
        pkg = name.strip().split(".")[0]
        by[pkg] = by.get(pkg, 0) + int(self_us)
    return [(k, v / 1000) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:top]]


def run(function_env: dict[str, dict[str, str]], repeat: int = 10, before_repeat: int = 5, progress=None) -> Cold:
    """``function_env``: function folder -> the environment the template gives it."""
    with tempfile.TemporaryDirectory(prefix="redflag-cold-") as tmp:
        trees = build_trees(Path(tmp))
        base_env = LAMBDA_ENV
        samples: dict[str, list[float]] = {"baseline": []}
        handlers: dict[str, dict[str, list[float]]] = {f: {"before": [], "after": []} for f in function_env}
        for i in range(max(repeat, before_repeat)):
            if progress and i == 0:
                progress(f"cold start: {len(function_env)} handlers x {repeat} ...")
            samples["baseline"].append(probe([str(trees["after"].runtime)], BASELINE, base_env)[0])
            for function, env in function_env.items():
                full = base_env | env
                for tree in ("after", "before"):
                    if (tree == "after" and i < repeat) or (tree == "before" and i < before_repeat):
                        handlers[function][tree].append(probe(trees[tree].paths(function), "import app", full)[0])
        profile = {f: importtime(trees["after"].paths(f), base_env | env) for f, env in function_env.items()}
        return Cold(
            baseline=statistics.median(samples["baseline"]),
            handlers={f: {t: statistics.median(v) for t, v in d.items() if v} for f, d in handlers.items()},
            repeat={"after": repeat, "before": before_repeat},
            profile=profile,
            layer_bytes={name: tree.sizes["layer bytes"] for name, tree in trees.items()},
        )


def function_envs(stack) -> dict[str, dict[str, str]]:
    """Folder -> environment, from a deployed ``LocalStack`` (the template's values, moto's names)."""
    out = {}
    for logical, folder in stack.functions.items():
        env = {k: v for k, v in stack.function_env[logical].items() if not k.startswith("POWERTOOLS_METRICS_DISABLED")}
        out[folder.name] = env
    return dict(sorted(out.items()))


if __name__ == "__main__":  # a quick look: python -m redflag_local.bench.cold
    os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    from redflag_local.standin.stack import LocalStack

    with LocalStack() as s:
        envs = function_envs(s)
    cold = run(envs, repeat=3, before_repeat=2, progress=print)
    print(f"baseline {cold.baseline * 1000:.0f} ms")
    for f, d in cold.handlers.items():
        print(f, {k: f"{v * 1000:.0f} ms" for k, v in d.items()}, f"ratio {cold.ratio(f):.2f}")
        print("  ", cold.profile[f][:6])
    print(cold.layer_bytes)
