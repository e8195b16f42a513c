"""What every conversion job shares: flags, the output directory, dead letters, shards, manifest.

The jobs write shards and small JSON-lines reports under `OUTPUT/_tmp/` while the
pipeline runs (a retried worker overwrites its own files, so retries are safe);
`finalize` then renames shards to `{split}-{i:05d}-of-{n:05d}.tfrecord`, sorts the
dead letters into `rejected.jsonl`, writes the manifest and removes `_tmp/`. A
reader never sees a half-converted directory as finished: the manifest comes last.
"""

import argparse
import importlib
import json
import os
import shlex
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from apache_beam.metrics import Metrics

from tfrecords import ArgumentParser, UserError, run_main
from tfrecords.manifest import MANIFEST, REJECTED, join, shard_name, write_manifest

TMP = "_tmp"
# The local default: in-process, and it never tries to download a runner binary
# (DirectRunner first looks for Prism, which fails offline before falling back).
LOCAL_RUNNER = "FnApiRunner"


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Splits `argv` into the job's flags and Beam's pipeline flags; anything else is an error.

    Beam itself only logs a warning for a flag it does not know ("Discarding unparseable
    args"), so a misspelt job flag (`--val_fraction` for `--val-fraction`) would run with
    the default. Here it is `error: unrecognized arguments: ...`.
    """
    args, rest = parser.parse_known_args(list(argv))
    check_pipeline_args(rest)
    return args, rest


def check_pipeline_args(pipeline_args: Sequence[str]) -> None:
    """One UserError naming the arguments that are not Beam pipeline flags."""
    unknown = unknown_pipeline_args(pipeline_args)
    if unknown:
        raise UserError(f"unrecognized arguments: {' '.join(unknown)}")


def job_parser(prog: str, purpose: str) -> ArgumentParser:
    """A job's flag parser whose help says what the job does and that other flags go to Beam."""
    return ArgumentParser(prog=prog, description=f"{purpose} Flags not listed here are Beam pipeline options "
                          "(--runner, --project, --region, --temp_location, --setup_file, ...).")


def unknown_pipeline_args(pipeline_args: Sequence[str]) -> List[str]:
    """The arguments that no Beam `PipelineOptions` class defines (as Beam itself parses them)."""
    beam_parser = _BeamArgumentParser(allow_abbrev=False)
    seen = set()
    for cls in PipelineOptions.__subclasses__():
        if str(cls) not in seen:  # Beam's own dedup: a class may be listed twice
            seen.add(str(cls))
            cls._add_argparse_args(beam_parser)  # pylint: disable=protected-access
    _, unknown = beam_parser.parse_known_args(list(pipeline_args))
    return unknown


def pipeline_options(pipeline_args: Sequence[str]) -> PipelineOptions:
    options = PipelineOptions(list(pipeline_args))
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = LOCAL_RUNNER
    return options


def command_line(prog: str, argv: Sequence[str]) -> str:
    return " ".join([prog, *map(shlex.quote, argv)])


def check_inputs(paths: Iterable[str]) -> None:
    """Every input exists and, where local, is a readable file (not a directory)."""
    for path in paths:
        try:
            found = FileSystems.exists(path)
        except ValueError as e:  # a scheme without an installed filesystem
            raise UserError(f"cannot open {path}: {e}") from None
        if not found:
            raise UserError(f"input not found: {path}")
        if "://" not in path:
            if os.path.isdir(path):
                raise UserError(f"input {path} is a directory, expected a file")
            if not os.access(path, os.R_OK):
                raise UserError(f"input {path} is not readable")


def is_inside(path: str, directory: str) -> bool:
    """Whether `path` lies in `directory` (or is it), local paths compared absolute and resolved."""
    if "://" not in directory and "://" not in path:
        path, directory = os.path.realpath(path), os.path.realpath(directory)
    directory = directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")


def prepare_output(output: str, overwrite: bool, inputs: Iterable[str] = ()) -> None:
    """Creates the output directory; refuses a non-empty one unless `overwrite`.

    Never deletes an input: an input inside the output directory is refused whether or
    not `overwrite` is given. Subdirectories count as content, so a directory left by a
    killed conversion (only `index/` and `_tmp/`) needs `--overwrite` to be started over.
    """
    for path in inputs:
        if is_inside(path, output):
            raise UserError(f"input {path} is inside the output directory {output}: "
                            "write the output elsewhere (an input is never deleted or overwritten)")
    if "://" in output:
        existing = [m.path for m in FileSystems.match([join(output, "**")])[0].metadata_list]
    else:
        if os.path.exists(output) and not os.path.isdir(output):
            raise UserError(f"output {output} exists and is not a directory")
        existing = [join(output, name) for name in sorted(os.listdir(output))] if os.path.isdir(output) else []
    if existing and not overwrite:
        raise UserError(f"output directory {output} is not empty (pass --overwrite to replace it; "
                        "a directory left by a killed conversion needs it too)")
    if existing:
        FileSystems.delete(existing)
    if "://" not in output:
        try:
            os.makedirs(output, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=output, prefix=".write-check-")
            probe.close()
        except OSError as e:
            raise UserError(f"cannot write to output directory {output}: {e.strerror or e}") from None


def tmp_path(output: str, name: str) -> str:
    return join(output, TMP, name)


def rejection(path: str, offset: int, reason: str, **extra) -> Dict:
    """One dead letter: where the input record was, and why it was not converted."""
    return {"file": path, "offset": offset, "reason": reason, **extra}


class WriteReport(beam.PTransform):
    """Writes a PCollection of JSON-able dicts to `_tmp/NAME-*.jsonl` for `finalize`."""

    def __init__(self, output: str, name: str):
        super().__init__()
        self._prefix = tmp_path(output, name)

    def expand(self, records):
        return (
            records
            | "ToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
            | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )


def read_report(output: str, name: str) -> List[Dict]:
    records = []
    for metadata in FileSystems.match([tmp_path(output, name) + "-*.jsonl"])[0].metadata_list:
        with FileSystems.open(metadata.path) as f:
            records.extend(json.loads(line) for line in f.read().decode("utf-8").splitlines() if line)
    return records


def finalize(output: str, manifest: Dict, shards: List[Dict], rejected: List[Dict],
             compression: str, split_order: Sequence[str] = ("train", "val", "test")) -> Dict:
    """Renames the temporary shards, writes rejected.jsonl and manifest.json.

    Args:
        shards: dicts with `split`, `path` (temporary), `records` and `order` (a
            sortable key giving the shard's place in its split).
        rejected: dead letters from `rejection()`.
    """
    splits: Dict[str, Dict] = {}
    for split in sorted({s["split"] for s in shards}, key=_split_sort_key(split_order)):
        mine = sorted((s for s in shards if s["split"] == split), key=lambda s: s["order"])
        names = [shard_name(split, i, len(mine), compression) for i in range(len(mine))]
        FileSystems.rename([s["path"] for s in mine], [join(output, n) for n in names])
        splits[split] = {"records": sum(s["records"] for s in mine), "shards": names}
    rejected = sorted(rejected, key=lambda r: (r["file"], r["offset"]))
    with FileSystems.create(join(output, REJECTED)) as f:
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected).encode("utf-8"))
    manifest = {**manifest, "splits": splits, "rejected": len(rejected), "compression": compression}
    write_manifest(output, manifest)
    FileSystems.delete([join(output, TMP)])
    return manifest


def _split_sort_key(order: Sequence[str]):
    return lambda split: (order.index(split) if split in order else len(order), split)


def summary(manifest: Dict, output: Optional[str] = None) -> str:
    """A few human lines about a converted dataset (printed by the jobs and the CLI)."""
    lines = [f"{manifest['kind']} v{manifest['schema_version']}" + (f" in {output}" if output else ""),
             f"  input records {manifest['input_records']}, rejected {manifest['rejected']}"
             + (f" (see {REJECTED})" if manifest["rejected"] else "")
             + (f", filtered {manifest['filtered']}" if manifest.get("filtered") else ""),
             f"  classes {manifest.get('num_classes', '-')}"]
    for split, info in manifest["splits"].items():
        lines.append(f"  {split:<8} {info['records']:>9} records in {len(info['shards'])} shards")
    lines.append(f"  manifest {MANIFEST}")
    return "\n".join(lines)


class CountAs:
    """A pass-through Map function that increments a Beam counter (shown on Dataflow)."""

    def __init__(self, namespace: str, name: str):
        self._counter = Metrics.counter(namespace, name)

    def __call__(self, element):
        self._counter.inc()
        return element


class CountReason:
    """A pass-through Map function over dead letters that counts each as `rejected_<its reason>`."""

    def __init__(self, namespace: str):
        self._namespace = namespace

    def __call__(self, letter: Dict) -> Dict:
        Metrics.counter(self._namespace, "rejected_" + letter["reason"]).inc()
        return letter


def run_installed(module: str) -> int:
    """`python -m beam_jobs.JOB`: runs the installed module's `run` and prints the summary.

    Run as a script, the job's DoFns would be classes of `__main__`, which Dataflow
    workers cannot import; the installed module's copies pickle by their real name.
    """
    job = importlib.import_module(module)
    return run_main(lambda argv: print(summary(job.run(argv))))
