"""EigenCAM with the SVD sign fixed so the salient region comes out positive."""

from __future__ import annotations

import numpy as np
from pytorch_grad_cam import EigenCAM
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction


class SignedEigenCAM(EigenCAM):
    """grad-cam's EigenCAM, but the first principal component's sign is chosen so its largest
    magnitude is positive (Seg-Eigen-CAM, Eq. 13); plain EigenCAM may return an inverted map."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        return get_2d_projection_with_sign_correction(np.asarray(activations))
