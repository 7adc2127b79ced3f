"""Degenerate channels of SMAP/MSL and what leaving them out of the threshold fits does to the
reference's own figures (README, "Degenerate parts"; issue 19).

1. Per channel, from the data alone: whether the training target is constant, and the share
   of training rows whose whole window (the W rows before and the row itself) is identical to
   the most common such window. Identical windows get identical scores from any model.
2. On ML4ITS's published MSL scores (its train_output.pkl / test_output.pkl, A_Score_Global =
   scores after its per-channel normalisation), its own `pot_eval` and `epsilon_eval` (spot.py,
   eval_methods.py from a checkout) on every training row (its summary.txt), without the
   constant-target channels' rows, and without the channels whose identical windows are at
   least half their rows (flow's default).

    python scripts/ml4its_constant_parts.py <ML4ITS checkout> <telemanom dir>

Needs numpy, pandas, scipy, tqdm, more_itertools (matplotlib is stubbed: only plots use it).
A measuring tool, not part of the product or CI.
"""
import collections
import contextlib
import csv
import gzip
import io
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd

WINDOW = 100
SHARE = 0.5  # flow's CONSTANT_SCORE_SHARE


def channels(telemanom, spacecraft):
    with open(telemanom / "labeled_anomalies.csv") as f:
        rows = list(csv.reader(f))[1:]
    return sorted(r[0] for r in rows if r[1] == spacecraft and r[0] != "P-2")


def train_rows(telemanom, channel):
    with gzip.open(telemanom / "train" / f"{channel}.npy.gz", "rb") as f:
        return np.load(f)


def identical_window_share(rows):
    """Share of scored rows (t >= W) whose rows t-W..t are one repeated row, for the most common row."""
    n = len(rows)
    if n <= WINDOW:
        return 0.0
    same = np.r_[False, (rows[1:] == rows[:-1]).all(axis=1)]
    run = np.zeros(n, int)
    for i in range(n):
        run[i] = run[i - 1] + 1 if same[i] else 1
    groups = collections.Counter(rows[t].tobytes() for t in range(WINDOW, n) if run[t] >= WINDOW + 1)
    return (max(groups.values()) if groups else 0) / (n - WINDOW)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ml4its, telemanom = Path(sys.argv[1]), Path(sys.argv[2])
    flagged = {}
    for spacecraft in ["SMAP", "MSL"]:
        for channel in channels(telemanom, spacecraft):
            rows = train_rows(telemanom, channel)
            constant_target = len(np.unique(rows[:, 0])) == 1
            share = identical_window_share(rows)
            flagged[channel] = (constant_target, share)
            if constant_target or share >= 0.05:
                print(f"{spacecraft} {channel}: {len(rows)} training rows, constant target {constant_target}, "
                      f"identical windows {share:.2f}")

    sys.modules["matplotlib"] = types.ModuleType("matplotlib")
    sys.modules["matplotlib.pyplot"] = types.ModuleType("matplotlib.pyplot")
    sys.path.insert(0, str(ml4its))
    from eval_methods import epsilon_eval, pot_eval  # noqa: E402  (ML4ITS)

    out = ml4its / "output" / "MSL" / "27062021_111641"
    train = pd.read_pickle(out / "train_output.pkl")["A_Score_Global"].values
    test_df = pd.read_pickle(out / "test_output.pkl")
    test, labels = test_df["A_Score_Global"].values, test_df["A_True_Global"].values
    msl = channels(telemanom, "MSL")
    spans, start = {}, 0
    for channel in msl:
        n = len(train_rows(telemanom, channel))
        spans[channel] = (max(start - WINDOW, 0), start + n - WINDOW if channel != msl[-1] else len(train))
        start += n

    def without(rule):
        keep = np.ones(len(train), bool)
        for channel, (lo, hi) in spans.items():
            if rule(*flagged[channel]):
                keep[lo:hi] = False
        return train[keep]

    for name, fitted in [
        ("every training row (the reference)", train),
        ("constant-target channels left out", without(lambda target, share: target)),
        ("channels with >= 50% identical windows left out (flow)", without(lambda target, share: share >= SHARE)),
    ]:
        with contextlib.redirect_stdout(io.StringIO()):
            pot = pot_eval(fitted, test, labels, q=0.001, level=0.90, dynamic=False)
            eps = epsilon_eval(fitted, test, labels, reg_level=0)
        print(f"MSL, {name}: {len(fitted)} scores; POT threshold {pot['threshold']:.5f} F1 {pot['f1']:.4f}; "
              f"epsilon threshold {eps['threshold']:.5f} F1 {eps['f1']:.4f}")


if __name__ == "__main__":
    main()
