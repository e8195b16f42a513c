"""YouTube-8M (the 2nd and 3rd challenges): frame records, NeXtVLAD / DBoF, segment classifiers, MAP@K.

What the registry loads: the competition's entry points (interface: `yt8m_keras.competitions`).

    yt8m-keras sample youtube8m --output DIR [--videos N] [--classes C] [--segment-classes S]
    yt8m-keras convert youtube8m --input 'train*.tfrecord' ...   (the `frames` Beam job)
    yt8m-keras evaluate --model-dir M --data D          GAP@20, Hit@1, PERR, mAP, segment MAP@K
    yt8m-keras predict --task segments|videos --model BASE/A/1 [--model ...] --data D --output s.csv
    yt8m-keras quickstart --recipe youtube8m           (also `--recipe yt8m`)
"""

from yt8m_keras.competitions import add_flag

NAME = "youtube8m"
TASKS = {
    "yt8m_video": "yt8m_keras.competitions.youtube8m.video_task",
    "yt8m_segment": "yt8m_keras.competitions.youtube8m.segment_task",
}
CONVERTERS = {"frames": ("beam_jobs.frames_to_tfrecords", "YouTube-8M frame-level records, official or MediaPipe")}
PREDICT_OUTPUTS = ("segments", "videos")
DESCRIPTION = "frame records -> NeXtVLAD -> segment classifier -> MAP@100K submission"
DEFAULT_CLASSES = 20


def add_sample_flags(parser) -> None:
    from yt8m_keras.cli import positive_int

    add_flag(parser, "--videos", type=positive_int, default=300, help="youtube8m: videos per split (default 300)")
    add_flag(parser, "--classes", type=positive_int, help="classes (default: cdiscount 8, youtube8m 20)")
    add_flag(parser, "--segment-classes", type=positive_int, default=10,
             help="youtube8m: classes rated at segment level (default 10)")


def sample(output: str, args):
    from tfrecords import UserError
    from yt8m_keras.competitions.youtube8m.sample import write_sample

    classes = args.classes or DEFAULT_CLASSES
    if args.segment_classes > classes:
        raise UserError(f"--segment-classes ({args.segment_classes}) cannot exceed --classes ({classes})")
    return write_sample(output, videos=args.videos, classes=classes, segment_classes=args.segment_classes,
                        seed=args.seed)


def add_evaluate_flags(parser) -> None:
    pass  # evaluation reads the held-out split named by the recipe


def evaluate(model_dir: str, data_dir: str, args) -> str:
    from yt8m_keras.competitions.youtube8m.predict import evaluate as evaluate_run

    return evaluate_run(model_dir, data_dir)["text"]


def add_predict_flags(parser) -> None:
    from yt8m_keras.cli import non_negative_int, positive_int

    add_flag(parser, "--k", type=positive_int, default=100_000, help="segments: segments kept per class")
    add_flag(parser, "--drop-first", type=non_negative_int, default=0, help="segments: skip each video's first N "
             "segments")
    add_flag(parser, "--drop-last", type=non_negative_int, default=0, help="segments: skip each video's last N "
             "segments")
    add_flag(parser, "--top-k", type=positive_int, default=20, help="videos: label/score pairs per video")


def plan(model_paths, data_dir: str, args):
    from yt8m_keras.competitions.youtube8m.predict import plan as video_plan

    videos = args.task == "videos" or (args.task is None and _trained_for(model_paths[0]) == "yt8m_video")
    return video_plan(model_paths, data_dir, split=args.split, segments=not videos, k=args.k,
                      drop_first=args.drop_first, drop_last=args.drop_last, top_k=args.top_k,
                      videos_per_batch=32 if videos else 8)


def _trained_for(model_path: str) -> str:
    import os

    from yt8m_keras.recipes import read_yaml

    return read_yaml(os.path.join(model_path, "assets.extra", "recipe.yaml")).get("task")


def quickstart(workdir: str) -> None:
    from yt8m_keras.competitions.youtube8m.quickstart import run

    run(workdir)
