import gzip
import struct

import numpy as np
import pytest

from medilab.data.formats.pixel_tables import load_sklearn_digits, read_mnist_idx, read_pixel_csv
from medilab.errors import InputFileError


def test_pixel_csv_train_and_test(tmp_path, make_digits_csv):
    csv = make_digits_csv(tmp_path / "t.csv", n=30)
    train = read_pixel_csv(csv, labelled=True, pixel_scale=16)
    assert train.images.shape == (30, 1, 8, 8)
    assert train.images.dtype == np.float32
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0
    assert train.labels.shape == (30,) and set(train.labels) <= set(range(10))
    assert train.sample_ids[:2] == ["1", "2"]
    test = read_pixel_csv(make_digits_csv(tmp_path / "u.csv", n=7, labelled=False), labelled=False)
    assert test.labels is None and test.images.shape == (7, 1, 8, 8)


def test_real_kaggle_digits(medilab_data):
    arrays = read_pixel_csv(medilab_data / "digits" / "train.csv", labelled=True)
    assert arrays.images.shape == (5000, 1, 28, 28)
    assert np.bincount(arrays.labels).tolist() == [500] * 10


@pytest.mark.parametrize(
    ("text", "labelled", "message"),
    [
        ("pixel0,pixel1,pixel2,pixel3\n1,2,3,4\n", True, "no 'label' column"),
        ("label,pixel0,pixel1,pixel2,pixel3\n1,1,2,3,4\n", False, "has a 'label' column"),
        ("label,pixel0,pixel1,pixel2\n1,1,2,3\n", True, "3 pixel columns is not a square"),
        ("label,pixel0,pixel1,pixel2,pixel3\n1,1,x,3,4\n", True, "row 1, column 'pixel1'"),
        (
            "label,pixel0,pixel1,pixel2,pixel3\n1,1,2,3,4\n1.5,1,2,3,4\n",
            True,
            "row 2, column 'label'",
        ),
        ("label,pixel0,pixel2,pixel1,pixel3\n1,1,2,3,4\n", True, "column 'pixel2'"),
        ("label,pixel0,pixel1,pixel2,pixel3\n", True, "no rows"),
        ("", True, "empty"),
    ],
)
def test_pixel_csv_errors_name_file_and_field(tmp_path, text, labelled, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputFileError, match=message) as info:
        read_pixel_csv(path, labelled=labelled)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("labelled", [True, False])
@pytest.mark.parametrize(("value", "shown"), [(999, "999"), (-20, "-20")])
def test_pixel_values_outside_scale_are_refused(tmp_path, labelled, value, shown):
    head = "label," if labelled else ""
    lead = "3," if labelled else ""
    rows = [f"{lead}0,1,2,3", f"{lead}4,5,{value},7"]
    path = tmp_path / "range.csv"
    path.write_text(head + "pixel0,pixel1,pixel2,pixel3\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputFileError) as info:
        read_pixel_csv(path, labelled=labelled)
    assert str(info.value) == (
        f"{path}: row 2, column 'pixel2': {shown} is outside 0…255 (pixel_scale); "
        "1 value(s) out of range"
    )
    path.write_text(head + "pixel0,pixel1,pixel2,pixel3\n" + f"{lead}0,1,16,3\n")
    with pytest.raises(InputFileError, match="row 1, column 'pixel2': 16 is outside 0…15"):
        read_pixel_csv(path, labelled=labelled, pixel_scale=15)
    assert read_pixel_csv(path, labelled=labelled, pixel_scale=16).images.max() == 1.0


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        read_pixel_csv(tmp_path / "nope.csv", labelled=True)


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28))
    _write_idx(tmp_path / "img.gz", images)
    _write_idx(tmp_path / "lab.gz", np.array([3, 1, 4, 1]))
    arrays = read_mnist_idx(tmp_path / "img.gz", tmp_path / "lab.gz")
    assert arrays.images.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(arrays.images[:, 0] * 255, images, atol=1e-3)
    assert arrays.labels.tolist() == [3, 1, 4, 1]


def test_mnist_idx_errors(tmp_path):
    _write_idx(tmp_path / "img.gz", np.zeros((4, 2, 2)))
    _write_idx(tmp_path / "lab.gz", np.array([1, 2]))
    with pytest.raises(InputFileError, match="2 labels for 4 images"):
        read_mnist_idx(tmp_path / "img.gz", tmp_path / "lab.gz")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03")
    with pytest.raises(InputFileError, match="bad magic"):
        read_mnist_idx(tmp_path / "junk", tmp_path / "lab.gz")


def test_sklearn_digits():
    arrays = load_sklearn_digits()
    assert arrays.images.shape == (1797, 1, 8, 8)
    assert arrays.images.max() == pytest.approx(1.0)
