"""The model families and the recipes need no TensorFlow, so models build under any Keras backend.

The accelerator benchmark (`benchmarks/accelerator_training.py`) builds them from their
recipes with KERAS_BACKEND=jax on hosts without TensorFlow. This suite runs on the
TensorFlow backend, so the models are checked on the import graph (no module reached from
`yt8m_keras.models` imports `tensorflow` while it loads; a lazy import inside a function,
for a path on GCS, say, is allowed) and the recipes in a process where TensorFlow cannot
be imported.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from module_imports import imports

from tfrecords import UserError
from yt8m_keras.recipes import read_yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
PROJECT = ("tfrecords", "yt8m_keras", "beam_jobs")


def _module_file(name: str):
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _tensorflow_chains(start: str):
    """Import chains from module `start` to tensorflow, following the project's own modules."""
    chains, seen, stack = [], set(), [(start, (start,))]
    while stack:
        name, chain = stack.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        if path.name == "__init__.py" or "." in name:  # a package's __init__ runs first
            parent = name.rsplit(".", 1)[0]
            if parent != name:
                stack.append((parent, chain))
        for imported in imports(path, load_time_only=True):
            if imported.split(".")[0] == "tensorflow":
                chains.append(chain + (imported,))
            elif imported.split(".")[0] in PROJECT:
                stack.append((imported, chain + (imported,)))
    return chains


def test_model_families_load_without_tensorflow():
    families = sorted(p for p in (ROOT / "yt8m_keras" / "models").rglob("*.py"))
    assert len(families) > 10
    for path in families:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        assert _tensorflow_chains(name) == [], name


def test_the_check_sees_a_chain_through_the_project():
    # A model importing the record kind, or the input pipelines, would be caught.
    assert ("tfrecords.yt8m_frame", "tensorflow") in _tensorflow_chains("tfrecords.yt8m_frame")
    chains = _tensorflow_chains("yt8m_keras.competitions.youtube8m.input")
    assert any(len(chain) > 2 and chain[-1].startswith("tensorflow") for chain in chains)


def test_recipes_load_without_tensorflow(tmp_path):
    # The benchmark reads the packaged recipes on a host without TensorFlow; a local
    # recipe file is read with plain `open` (gs:// ones still go through tf.io.gfile).
    code = textwrap.dedent("""
        import importlib.abc, sys

        class NoTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorflow":
                    raise ImportError("no TensorFlow on this host")

        sys.meta_path.insert(0, NoTensorFlow())
        from yt8m_keras.recipes import RECIPES_DIR, load_recipe
        import os
        names = sorted(f[:-5] for f in os.listdir(RECIPES_DIR) if f.endswith(".yaml"))
        print(len([load_recipe(name) for name in names]), "tensorflow" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    count, imported = result.stdout.split()
    assert int(count) >= 10 and imported == "False"


def test_a_missing_recipe_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_yaml(str(tmp_path / "nowhere.yaml"))
