"""Property-based fuzzing of the readers (hypothesis): real files truncated, with bytes flipped
or with huge declared sizes are either read into a valid result or refused with
``MedilabError``, never another exception. The long run is ``benchmarks/fuzz.py``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzz_cases import Seed, check, flip, seeds, truncate, warm_up
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SEEDS = {seed.name: seed for seed in seeds()}
FOLDER = Path(tempfile.mkdtemp(prefix="medilab-fuzz-"))
warm_up(FOLDER)

READERS = ["png", "dicom", "nrrd", "nifti", "csv", "yaml"]


def mutations(seed: Seed) -> st.SearchStrategy[bytes]:
    size = len(seed.data)
    truncated = st.integers(0, size - 1).map(lambda at: truncate(seed.data, at))
    flips = st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1,
                     max_size=8).map(lambda changes: flip(seed.data, changes))
    huge = st.integers(0, 11).map(lambda pick: seed.huge(seed.data, pick))
    return st.one_of(truncated, flips, huge)


FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],  # a failure is reported unshrunk
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", READERS)
def test_reader_refuses_or_reads_mutated_files(name):
    seed = SEEDS[name]

    @FUZZ
    @given(data=mutations(seed))
    def fuzz(data: bytes) -> None:
        assert check(seed, data, FOLDER) in ("ok", "refused")

    fuzz()


@pytest.mark.parametrize("name", list(SEEDS))
def test_unmutated_seed_reads(name):
    assert check(SEEDS[name], SEEDS[name].data, FOLDER) == "ok"


@pytest.mark.parametrize("pick", range(4))
def test_png_with_a_huge_declared_size_is_refused(pick):
    """Pillow's decompression-bomb guard used to escape as DecompressionBombError."""
    assert check(SEEDS["png"], SEEDS["png"].huge(SEEDS["png"].data, pick), FOLDER) == "refused"


@pytest.mark.parametrize("name", ["dicom", "nrrd", "nifti"])
def test_volumes_with_huge_declared_sizes_are_refused(name):
    seed = SEEDS[name]
    assert check(seed, seed.huge(seed.data, 0), FOLDER) == "refused"
