"""``medilab data verify`` on every shared dataset: samples, files read, problems and seconds.

    python benchmarks/verify.py [--workers N]

Reads ``$MEDILAB_DATA`` (default ``../shared/data``) through the lab configs; a dataset that is
not there is skipped.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from medilab.config import load_config
from medilab.data.verify import verify_dataset

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # config → the data key pointing into $MEDILAB_DATA, and where
    "lab1_digits": ("data.train_csv", "digits/train.csv"),
    "lab2_nih1000": ("data.root", "nih1000"),
    "lab2_breastmnist": ("data.path", "medmnist/breastmnist.npz"),
    "lab2_mri_slices": ("data.root", "mri"),
    "lab4_unet": ("data.root", "drive/training"),
    "lab4_unet_isbi": ("data.root", "isbi2012"),
    "lab5_tbx11k": ("data.root", "tbx11k"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    print(f"{'config':<18} {'samples':>8} {'files':>6} {'fatal':>6} {'warnings':>9} {'s':>6}")
    for name, (key, relative) in CONFIGS.items():
        target = data / relative
        if not target.exists():
            print(f"{name:<18} skipped: {target} not found")
            continue
        config = load_config(REPO / "configs" / f"{name}.yaml", [f"{key}={target}"])
        report = verify_dataset(config, workers=args.workers)
        fatal = sum(p.severity == "fatal" for p in report.problems)
        print(f"{name:<18} {report.samples:>8} {report.files_read:>6} {fatal:>6} "
              f"{len(report.problems) - fatal:>9} {report.seconds:>6.1f}")


if __name__ == "__main__":
    main()
