"""False alarms on normal running with a freshly trained model, against the learnt period.

The anomaly-free SKAB file (9,405 rows, 2.6 hours of one healthy run) scored once, as
`appliance eval skab` does, trains on its first 400 rows only; how many of the rows after that
alarm then depends on that one start. Here the file is cut into pieces of T learnt + 775 judged
rows (775: about what a valve1 file leaves after its 400 learnt rows), one piece starting every
1,175 rows; each piece's int8 autoencoder is trained on its first T rows (the training of
`appliance eval`) and the scorer's threshold and alarm rules (the gateway's `build_threshold` and
`decide`, seeded with the learnt rows' errors) judge the 775 rows after them. No row is
anomalous, so every alarmed row is a false alarm. T = 400 is the SKAB protocol (and the baseline
each longer T is compared with, as a ratio); longer T is the gateway's case, whose commissioning
and training use hours of normal data.

Per T and seed: the alarmed share of all judged rows and of each piece. Errors are cached per
(T, piece, seed) under the sweep cache; `--grid` (bench/sweep_skab.py's axes, repeatable)
replays other settings over the same errors.

    .venv/bin/python bench/normal_false_alarms.py \
        ../shared/data/skab/anomaly-free/anomaly-free.csv \
        --learnt 400,800,1600,3200 --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from sweep_skab import FileErrors, Setting, grid, int8_errors, replay, train_key

from appliance.evaluation.evaluate import SKAB_TRAIN_ROWS
from appliance.evaluation.skab import SkabRecording, load_skab_csv
from appliance.training.autoencoder import TrainSettings

JUDGED_ROWS = 775
PIECE_STRIDE = SKAB_TRAIN_ROWS + JUDGED_ROWS
DEFAULT_SETTING = (
    "statistic=mean_std k=6.5 on=1 off=10 clear=0.9 floor=0.8 window=1000 alpha=1"
    " rebaseline=550 reset=60 return=425"
)


def piece_errors(
    recording: SkabRecording, start: int, learnt: int, train: TrainSettings, cache: Path
) -> FileErrors:
    """The piece at `start`: its model trained on `learnt` rows, errors of those and the judged."""
    cached = cache / train_key(train) / "normal_pieces" / f"t{learnt}_at{start}.npy"
    rows = recording.features[start : start + learnt + JUDGED_ROWS]
    if not cached.exists():
        errors = int8_errors(rows[:learnt], recording.feature_names, train, rows)
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, errors)
    errors = np.load(cached)
    judged = slice(start + learnt, start + learnt + JUDGED_ROWS)
    return FileErrors(
        times=recording.times[judged],
        anomaly=np.zeros(JUDGED_ROWS, dtype=np.bool_),
        changepoint=np.zeros(JUDGED_ROWS, dtype=np.bool_),
        train={"int8": errors[:learnt]},
        test={"int8": errors[learnt:]},
    )


def alarmed_percent(pieces: list[FileErrors], setting: Setting) -> tuple[float, list[float]]:
    """All judged rows' alarmed share and each piece's, in percent."""
    flags = [replay(piece, setting, "int8") for piece in pieces]
    pooled = 100 * sum(int(f.sum()) for f in flags) / sum(len(f) for f in flags)
    return pooled, [100 * float(f.mean()) for f in flags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="an anomaly-free SKAB file")
    parser.add_argument("--learnt", default="400,800,1600,3200", help="learnt rows T per piece")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--grid", action="append", help=f"default: {DEFAULT_SETTING}")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sweep_skab")
    args = parser.parse_args()
    recording = load_skab_csv(args.csv)
    settings = [s for spec in (args.grid or [DEFAULT_SETTING]) for s in grid(spec)]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    print(f"{args.csv}: {len(recording.features)} rows; pieces of T learnt + {JUDGED_ROWS} judged")
    for setting in settings:
        print(f"\n{setting.name}")
        baseline: float | None = None
        for learnt in (int(value) for value in args.learnt.split(",")):
            starts = range(0, len(recording.features) - learnt - JUDGED_ROWS + 1, PIECE_STRIDE)
            per_seed = []
            for seed in seeds:
                train = TrainSettings(seed=seed)
                pieces = [piece_errors(recording, s, learnt, train, args.cache) for s in starts]
                pooled, each = alarmed_percent(pieces, setting)
                per_seed.append(pooled)
                cells = " ".join(f"{value:5.1f}" for value in each)
                print(f"  T {learnt:5d} seed {seed}: {pooled:5.1f} % of {len(pieces)} pieces' rows"
                      f"  (pieces: {cells})", flush=True)  # fmt: skip
            mean = statistics.fmean(per_seed)
            baseline = mean if baseline is None else baseline
            ratio = mean / baseline if baseline else float("nan")
            print(f"  T {learnt:5d}: mean over seeds {mean:5.1f} %, worst {max(per_seed):5.1f} %,"
                  f" x{ratio:.2f} of the first T's mean")  # fmt: skip


if __name__ == "__main__":
    main()
