#!/usr/bin/env python3
"""gbstats side of `tierup-stats bench-analysis`: analyses every experiment of a JSONL file of
`AnalysisInput` lines in-process with gbstats 0.8.0, the same work `shared::statistics::analyze`
does per line (SRM, chi-squared for proportions, and per treatment the absolute and relative
TwoSidedTTest, EffectBayesianABTest and SequentialTwoSidedTTest), and writes the outputs and the
time the analysis took (file reading and JSON parsing excluded, as on the Rust side).

    .venv-fixtures/bin/python scripts/bench/gbstats_analyze.py IN.jsonl OUT.json

Needs the fixture venv (scripts/fixtures/requirements.txt). `tierup-stats bench-analysis`
runs it; it is not meant to be run by hand except to inspect the outputs.
"""

import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))

from gen_statistics import analyze  # noqa: E402  (the fixtures' gbstats mapping, one source)


def main():
    # gbstats' sequential e-value overflows numpy's exp on very strong effects (p becomes 0);
    # the warning is noise here.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        inputs = [json.loads(line) for line in f if line.strip()]
    analyze(inputs[0], cross_check=False)  # warm-up: first-call costs are not the analysis
    start = time.perf_counter()
    outputs = [analyze(case, cross_check=False) for case in inputs]
    seconds = time.perf_counter() - start
    with open(sys.argv[2], "w") as f:
        json.dump({"experiments": len(inputs), "seconds": seconds, "outputs": outputs}, f)


if __name__ == "__main__":
    main()
