"""``python -m medilab.tune.worker``: one extra worker process of ``medilab tune --workers K``;
its request (config, space, folder, storage, deadline, index) comes as JSON in the environment
variable :data:`~medilab.tune.search.WORKER_ENV`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from medilab.config import validate_config
from medilab.errors import MedilabError
from medilab.tune.folder import open_study, space_of
from medilab.tune.objective import Setup
from medilab.tune.search import WORKER_ENV, work


def main() -> int:
    """Work on the study until it has its trials; a MedilabError is one line, exit code 2."""
    if WORKER_ENV not in os.environ:
        print(f"error: no {WORKER_ENV}: a tune worker is started by medilab tune --workers K",
              file=sys.stderr)
        return 2
    try:
        body = json.loads(os.environ[WORKER_ENV])
        config = validate_config(body["config"], origin=f"{WORKER_ENV}")
        setup = Setup(config, space_of(body), Path(body["out"]),
                      tuple(Path(path) for path in body.get("fold_splits") or ()))
        study = open_study(setup.out, body["storage"], config, body.get("cv"))
        failed = work(study, setup, int(body["trials"]), body["deadline"],
                      worker=int(body["worker"]))
        if failed:
            raise MedilabError(f"{failed} trials failed (tune.csv says why)")
    except MedilabError as exc:
        print(f"error: tune worker {os.getpid()}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
