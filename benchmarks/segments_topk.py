"""Streaming top-K segments per class against the 7th place's int16 memmap, in one run.

    python benchmarks/segments_topk.py [--segments 1700000] [--classes 1000] [--k 100000]
                                       [--models 1] [--batch 8192] [--workdir /tmp]

The 2019 test set: about 1.7M five-second segments scored for 1,000 classes; a submission
lists each class's best K = 100,000. Synthetic scores are generated block by block from a
seeded RNG (never all in memory); with --models 2 two models' blocks are averaged.

- ours: `SegmentTopK(k)` fed each (averaged) block: memory C * (K + B) * 8 bytes whatever
  the number of segments.
- memmap (the 7th place): every model's scores quantised to int16 in a memmap on disk
  (segments x classes x 2 bytes, 3.4 GB per model at full size), then for each class the
  models' columns averaged and sorted (np.argsort), the first K kept.

Each approach runs in its own subprocess, so its peak RSS (ru_maxrss) is its own. The
memmap's RSS counts the file pages it mapped and touched: page cache the kernel could
evict, but resident while the approach runs. Prints peak memory, segments/s (excluding
score generation, which is the same work for both; end-to-end figures too) and the
ratios, and checks that both found nearly the same top K for a few classes (not exactly:
int16 quantisation creates ties the float32 scores do not have).
Goal: ours under 2 GB at any --segments and --models.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from yt8m_keras.competitions.youtube8m.topk import SegmentTopK, average_models

CHECK_CLASSES = 3  # classes whose top K both approaches save, to compare.
INT16_SCALE = 32767  # scores in [0, 1) -> int16, as a memmap of quantised scores does.


def score_block(seed, model, block, rows, classes):
    """One model's scores for one block: the same numbers in every process and run."""
    rng = np.random.default_rng([seed, model, block])
    return rng.random((rows, classes), dtype=np.float32)


def blocks(args):
    for block, start in enumerate(range(0, args.segments, args.batch)):
        yield block, start, min(args.batch, args.segments - start)


def check_classes(args):
    return sorted({0, args.classes // 2, args.classes - 1})[:CHECK_CLASSES]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_ours(args):
    topk = SegmentTopK(args.classes, k=args.k)
    generate = update = 0.0
    wall = time.perf_counter()
    cpu = time.process_time()
    most_entries = 0
    for block, start, rows in blocks(args):
        t0 = time.perf_counter()
        models = [score_block(args.seed, m, block, rows, args.classes) for m in range(args.models)]
        scores = models[0] if args.models == 1 else average_models(models)
        del models
        t1 = time.perf_counter()
        topk.update(np.arange(start, start + rows, dtype=np.int64), scores)
        update += time.perf_counter() - t1
        generate += t1 - t0
        most_entries = max(most_entries, topk.stored_entries)
    t0 = time.perf_counter()
    tops = {str(c): topk.result(c)[0] for c in check_classes(args)}
    for c in range(args.classes):  # What a writer does: every class cut and sorted.
        topk.result(c)
    finish = time.perf_counter() - t0
    np.savez(args.tops, **tops)
    return {
        "generate_s": generate, "work_s": update + finish, "update_s": update,
        "finish_s": finish, "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu, "peak_rss_mb": peak_rss_mb(),
        "held_mb": topk.nbytes / 2**20, "most_entries": most_entries,
        "entry_bound": args.classes * (args.k + topk.slack),
    }


def run_memmap(args):
    paths = [os.path.join(args.scratch, f"scores_model{m}.int16") for m in range(args.models)]
    maps = [np.memmap(p, dtype=np.int16, mode="w+", shape=(args.segments, args.classes))
            for p in paths]
    generate = write = 0.0
    wall = time.perf_counter()
    cpu = time.process_time()
    for block, start, rows in blocks(args):
        for m, scores_map in enumerate(maps):
            t0 = time.perf_counter()
            scores = score_block(args.seed, m, block, rows, args.classes)
            t1 = time.perf_counter()
            scores_map[start:start + rows] = np.rint(scores * INT16_SCALE).astype(np.int16)
            write += time.perf_counter() - t1
            generate += t1 - t0
    t0 = time.perf_counter()
    for scores_map in maps:
        scores_map.flush()
    write += time.perf_counter() - t0

    t0 = time.perf_counter()
    wanted = set(check_classes(args))
    tops = {}
    class_block = 32  # columns read at once: [segments, 32] per model in RAM.
    for c0 in range(0, args.classes, class_block):
        c1 = min(args.classes, c0 + class_block)
        if args.models == 1:
            columns = np.array(maps[0][:, c0:c1]).T.copy()
        else:
            columns = sum(np.asarray(mm[:, c0:c1], dtype=np.float32) for mm in maps).T.copy()
        for offset, column in enumerate(columns):
            # Best first, as one would write it (np.argsort's default sort, the fastest).
            top = np.argsort(-column)[:args.k]
            if c0 + offset in wanted:
                tops[str(c0 + offset)] = top.astype(np.int64)
        del columns
    sort = time.perf_counter() - t0
    np.savez(args.tops, **tops)
    result = {
        "generate_s": generate, "work_s": write + sort, "write_s": write, "sort_s": sort,
        "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": peak_rss_mb(), "disk_mb": sum(os.path.getsize(p) for p in paths) / 2**20,
    }
    del maps
    for p in paths:
        os.remove(p)
    return result


def child(args):
    result = run_ours(args) if args.run == "ours" else run_memmap(args)
    with open(args.result, "w") as out:
        json.dump(result, out)


def spawn(name, args, scratch):
    result_path = os.path.join(scratch, f"{name}.json")
    tops_path = os.path.join(scratch, f"{name}_tops.npz")
    command = [sys.executable, os.path.abspath(__file__), "--run", name,
               "--segments", str(args.segments), "--classes", str(args.classes),
               "--k", str(args.k), "--models", str(args.models), "--batch", str(args.batch),
               "--seed", str(args.seed), "--scratch", scratch, "--result", result_path,
               "--tops", tops_path]
    print(f"running {name} ...", flush=True)
    subprocess.run(command, check=True)
    with open(result_path) as source:
        result = json.load(source)
    with np.load(tops_path) as tops:
        result["tops"] = {c: tops[c] for c in tops.files}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=1_700_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=1, help="models averaged (1 or more)")
    parser.add_argument("--batch", type=int, default=8192, help="segments per block")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=tempfile.gettempdir(),
                        help="where the memmap files go (needs segments x classes x 2 B per model)")
    parser.add_argument("--run", choices=["ours", "memmap"], help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--tops", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.segments, args.classes, args.k, args.models, args.batch) <= 0:
        parser.error("--segments, --classes, --k, --models and --batch must be positive")
    if args.run:
        return child(args)

    needed = args.models * args.segments * args.classes * 2
    free = shutil.disk_usage(args.workdir).free
    if needed + (1 << 30) > free:
        most = max(1, int((free - (1 << 30)) / (args.models * args.classes * 2)))
        print(f"error: the memmap needs {needed / 2**30:.1f} GiB in {args.workdir}, "
              f"{free / 2**30:.1f} GiB free; pass --segments {most} or less, or --workdir.")
        return 2
    print(f"{args.segments:,} segments x {args.classes:,} classes, K = {args.k:,}, "
          f"{args.models} model(s), blocks of {args.batch:,}; memmap: "
          f"{needed / 2**30:.2f} GiB on disk in {args.workdir}")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="yt8m_bench_topk_") as scratch:
        ours = spawn("ours", args, scratch)
        base = spawn("memmap", args, scratch)

    rate = lambda r, key: args.segments / r[key]  # noqa: E731
    print()
    print(f"{'':22}{'SegmentTopK':>14}{'int16 memmap':>14}{'memmap/ours':>13}")
    print(f"{'peak RSS (MB)':22}{ours['peak_rss_mb']:14.0f}{base['peak_rss_mb']:14.0f}"
          f"{base['peak_rss_mb'] / ours['peak_rss_mb']:12.2f}x")
    print(f"{'segments/s (work)':22}{rate(ours, 'work_s'):14,.0f}{rate(base, 'work_s'):14,.0f}"
          f"{base['work_s'] / ours['work_s']:12.2f}x  (time)")
    end_to_end = [args.segments / (r["work_s"] + r["generate_s"]) for r in (ours, base)]
    print(f"{'segments/s (with gen)':22}{end_to_end[0]:14,.0f}{end_to_end[1]:14,.0f}")
    print(f"{'wall s / cpu s':22}{ours['wall_s']:8.1f}/{ours['cpu_s']:<5.0f}"
          f"{base['wall_s']:8.1f}/{base['cpu_s']:<5.0f}")
    print(f"ours: update {ours['update_s']:.1f} s + cut/sort all classes {ours['finish_s']:.1f} s; "
          f"holds {ours['held_mb']:.0f} MB (formula C*(K+B)*8 + key table); "
          f"most entries held {ours['most_entries']:,} <= bound {ours['entry_bound']:,}")
    print(f"memmap: write {base['write_s']:.1f} s + sort {base['sort_s']:.1f} s; "
          f"{base['disk_mb']:.0f} MB on disk")
    overlaps = []
    for c, top in ours["tops"].items():
        other = base["tops"][c]
        overlaps.append(len(np.intersect1d(top, other)) / max(1, len(top)))
    print("top-K agreement with the memmap (int16 ties differ at the cut): "
          + ", ".join(f"class {c}: {o:.4%}" for c, o in zip(ours["tops"], overlaps)))
    verdict = "under" if ours["peak_rss_mb"] < 2048 else "OVER"
    print(f"ours peak {ours['peak_rss_mb']:.0f} MB: {verdict} the 2 GB goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
