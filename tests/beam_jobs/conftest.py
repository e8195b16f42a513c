"""Beam's portable path, offline: SDK workers in other processes that have only the built wheel.

`portable_beam` (session-scoped, built on first use) makes what a Dataflow worker has:

1. the project's wheel, built from a copy of this source tree (pip wheel, no network);
2. a virtual environment W without system site packages holding that wheel (--no-deps).
   The heavy dependencies (TensorFlow, Beam, ...) come from this interpreter's site-packages
   through one `.pth` file in W that lists those directories. A `.pth` path line adds a
   directory without running that directory's own `.pth` files, so an editable install of the
   project there is not activated, and W's own site-packages (the wheel) comes first on
   sys.path: a copy of the project installed next to the dependencies is shadowed;
3. a Beam worker pool, `W/bin/python -m apache_beam.runners.worker.worker_pool_main`, in its
   own process group, its working directory outside the source tree, PYTHONPATH cleared and
   W/bin first on PATH (the pool starts each SDK worker as `python -c ...`, found on PATH).

Jobs then run with `portable_beam.pipeline_args`: PortableRunner with the embedded (Python,
in-process) job service and an EXTERNAL environment pointing at the pool, so every DoFn is
unpickled and run by the wheel's modules in an SDK worker process, as on Dataflow.

Before handing it out, the fixture runs a probe pipeline through it; `portable_beam.probe`
holds what the SDK worker reported (where beam_jobs, tfrecords and yt8m_keras came from, its
pid, sys.prefix, cwd, sys.path) and the Beam counter the job service returned.
"""

import glob
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
POOL_READY = re.compile(r"Started worker pool servicer at port: (\S+)")
PROBE_NAMESPACE = "portable_probe"
PROBE_ELEMENTS = 3


class PortableBeam(NamedTuple):
    pipeline_args: List[str]  # Beam pipeline flags that send a job's work to the wheel-only workers
    venv: str                 # W
    site_packages: str        # W's site-packages, where the wheel is installed
    wheel: str
    pool_pid: int
    probe: Dict               # what the probe pipeline's SDK worker reported (see _probe)


def _copy_sources(destination: Path) -> None:
    """The files a wheel is built from: top-level files and packages, not tests or build leftovers.

    Building in place would write build/ and *.egg-info into the (shared) source tree.
    """
    destination.mkdir()
    for entry in REPO.iterdir():
        if entry.is_file():
            shutil.copy2(entry, destination / entry.name)
        elif entry.is_dir() and (entry / "__init__.py").exists() and entry.name != "tests":
            shutil.copytree(entry, destination / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _build_wheel(work: Path) -> str:
    source, dist = work / "src", work / "dist"
    _copy_sources(source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(dist), str(source)], check=True, cwd=work)
    [wheel] = glob.glob(str(dist / "*.whl"))
    return wheel


def _dependency_paths() -> List[str]:
    paths = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.append(site.getusersitepackages())
    return paths


def _make_venv(venv: Path, wheel: str) -> str:
    """W: the wheel alone (no source tree), the dependencies through a .pth file; returns W's site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
                    "--quiet", wheel], check=True, env=_clean_env(venv))
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True, env=_clean_env(venv)).stdout.strip()
    with open(os.path.join(site_packages, "_test_dependencies.pth"), "w") as f:
        f.write("".join(path + "\n" for path in _dependency_paths()))
    return site_packages


def _clean_env(venv: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               PYTHONNOUSERSITE="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return env


def _start_pool(venv: Path, cwd: Path, log_path: Path):
    """The worker pool (its own process group, so teardown also stops its SDK workers); returns (process, address)."""
    log = open(log_path, "wb")
    pool = subprocess.Popen([str(venv / "bin" / "python"), "-m", "apache_beam.runners.worker.worker_pool_main",
                             "--service_port=0"], cwd=cwd, env=_clean_env(venv), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = POOL_READY.search(log_path.read_text(errors="replace"))
        if found:
            return pool, found.group(1)
        if pool.poll() is not None:
            break
        time.sleep(0.2)
    _stop_pool(pool)
    raise RuntimeError(f"the Beam worker pool did not start; its log:\n{log_path.read_text(errors='replace')[-4000:]}")


def _stop_pool(pool) -> None:
    if pool.poll() is None:
        os.killpg(pool.pid, signal.SIGTERM)
        try:
            pool.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()
    try:  # SDK workers left in the group once the pool has gone
        os.killpg(pool.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _probe(pipeline_args: List[str], output: Path) -> Dict:
    """Runs a tiny pipeline on the workers; returns what they report, and the counter the job service returned."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    def where(_):  # pickled by value (a local function); it imports the worker's own modules
        import importlib
        Metrics.counter(PROBE_NAMESPACE, "elements").inc()
        return json.dumps({
            "files": {name: importlib.import_module(name).__file__ for name in ("beam_jobs", "tfrecords", "yt8m_keras")},
            "pid": os.getpid(), "prefix": sys.prefix, "executable": sys.executable, "cwd": os.getcwd(),
            "sys_path": sys.path})

    pipeline = beam.Pipeline(options=PipelineOptions(pipeline_args))
    _ = (pipeline | beam.Create(range(PROBE_ELEMENTS)) | beam.Map(where)
         | beam.io.WriteToText(str(output / "probe"), file_name_suffix=".jsonl"))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(PROBE_NAMESPACE))["counters"]
    reports = [json.loads(line) for path in sorted(glob.glob(str(output / "probe*.jsonl")))
               for line in open(path).read().splitlines()]
    return {"workers": reports, "counters": {c.key.metric.name: c.committed for c in counters}}


@pytest.fixture(scope="session")
def portable_beam(tmp_path_factory) -> PortableBeam:
    """Wheel-only SDK workers in other processes, and the pipeline flags that use them (see the module doc)."""
    work = tmp_path_factory.mktemp("portable_beam")
    wheel = _build_wheel(work)
    venv = work / "W"
    site_packages = _make_venv(venv, wheel)
    pool_cwd = work / "pool_cwd"
    pool_cwd.mkdir()
    pool, address = _start_pool(venv, pool_cwd, work / "worker_pool.log")
    try:
        pipeline_args = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                         f"--environment_config={address}"]
        probe_dir = work / "probe"
        probe_dir.mkdir()
        probe = _probe(pipeline_args, probe_dir)
        yield PortableBeam(pipeline_args, str(venv), site_packages, wheel, pool.pid, probe)
    finally:
        _stop_pool(pool)


@pytest.fixture(scope="session")
def portable_pipeline_args(portable_beam) -> List[str]:
    """Pipeline flags for a job to run through Beam's portable path on wheel-only SDK worker processes."""
    return list(portable_beam.pipeline_args)
