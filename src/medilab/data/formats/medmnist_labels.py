"""The label dictionaries of the MedMNIST v2 datasets (``INFO[name]["label"]`` of the
``medmnist`` package), so a run on one of its npz files names its classes without that
package: BreastMNIST's class 1 is "normal, benign", not "1"."""

from __future__ import annotations

import re
from pathlib import Path

_ORGAN = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
          "liver", "lung-left", "lung-right", "pancreas", "spleen"]

LABELS: dict[str, list[str]] = {
    "breastmnist": ["malignant", "normal, benign"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "adrenalmnist3d": ["normal", "hyperplasia"],
    "nodulemnist3d": ["benign", "malignant"],
    "vesselmnist3d": ["vessel", "aneurysm"],
    "synapsemnist3d": ["inhibitory synapse", "excitatory synapse"],
    "fracturemnist3d": ["buckle rib fracture", "nondisplaced rib fracture",
                        "displaced rib fracture"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                   "melanocytic nevi", "vascular lesions"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast", "immature granulocytes",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"],
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"],
    "organamnist": _ORGAN, "organcmnist": _ORGAN, "organsmnist": _ORGAN,
    "organmnist3d": _ORGAN,
}


def medmnist_class_names(path: str | Path, num_classes: int) -> list[str] | None:
    """The class names of a MedMNIST npz recognised by its file name (``breastmnist.npz``,
    ``adrenalmnist3d_64.npz``), when they match ``num_classes``; else None."""
    stem = re.sub(r"_(28|64|128|224)$", "", Path(path).stem.lower())
    names = LABELS.get(stem)
    return list(names) if names is not None and len(names) == num_classes else None
