"""Long fuzzing run of the readers: random truncations, byte flips and huge declared sizes of
real files (see tests/io/fuzz_cases.py); prints the cases tried per reader and every crash
(an exception other than MedilabError).

    python benchmarks/fuzz.py [--cases 2000] [--seed 0] [--readers png,dicom,...]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "io"))

from fuzz_cases import ReaderCrash, check, random_mutation, seeds, warm_up  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per reader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readers", default="", help="comma-separated (default: all)")
    args = parser.parse_args()
    chosen = set(filter(None, args.readers.split(",")))
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="medilab-fuzz-"))
    warm_up(folder)
    crashes = 0
    for seed in seeds():
        if chosen and seed.name not in chosen:
            continue
        outcomes: collections.Counter[str] = collections.Counter()
        found: collections.Counter[str] = collections.Counter()  # by exception type
        examples: dict[str, str] = {}
        start = time.perf_counter()
        for _ in range(args.cases):
            kind, data = random_mutation(seed, rng)
            try:
                outcomes[check(seed, data, folder)] += 1
            except ReaderCrash as crash:
                outcomes["crash"] += 1
                error = str(crash).split(": ")[1] if ": " in str(crash) else str(crash)
                found[error] += 1
                examples.setdefault(error, f"{kind}: {str(crash)[:160]}")
        seconds = time.perf_counter() - start
        print(f"{seed.name:<6} {args.cases} cases in {seconds:.1f} s: "
              + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())), flush=True)
        for error, count in found.most_common():
            print(f"    {count} x {error}, e.g. {examples[error]}")
        crashes += sum(found.values())
    print(f"crashes: {crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
