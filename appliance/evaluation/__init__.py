"""Detection quality measured on public data: SKAB (leaderboard protocol) and raw vibration.

- skab.py: find and load SKAB-format CSVs.
- metrics.py: F1/FAR/MAR and NAB scores exactly as the SKAB leaderboard defines them (pure).
- detector.py: the StreamingDetector seam and the causal loop that drives one.
- cwru.py: raw .npy recordings through the real feature path.
- report.py: prediction CSVs, summary.json, text tables, plots.
- evaluate.py: the runs, and `run_skab_eval` / `run_vibration_eval` for the command line.
"""

from appliance.evaluation.detector import DetectorFactory, StreamingDetector, StreamVerdicts
from appliance.evaluation.evaluate import (
    evaluate_skab,
    evaluate_vibration,
    run_skab_eval,
    run_vibration_eval,
)
from appliance.evaluation.report import SkabSummary, VibrationSummary
from appliance.evaluation.skab import EvaluationError, SkabFormatError

__all__ = [
    "DetectorFactory",
    "EvaluationError",
    "SkabFormatError",
    "SkabSummary",
    "StreamVerdicts",
    "StreamingDetector",
    "VibrationSummary",
    "evaluate_skab",
    "evaluate_vibration",
    "run_skab_eval",
    "run_vibration_eval",
]
