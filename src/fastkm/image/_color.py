"""sRGB <-> Oklab (Ottosson 2020), for clustering colours in a perceptual space."""

import numpy as np

_LINEAR_TO_LMS = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                           [0.2119034982, 0.6806995451, 0.1073969566],
                           [0.0883024619, 0.2817188376, 0.6299787005]])
_LMS_TO_OKLAB = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                          [1.9779984951, -2.4285922050, 0.4505937099],
                          [0.0259040371, 0.7827717662, -0.8086757660]])
_OKLAB_TO_LMS = np.linalg.inv(_LMS_TO_OKLAB)
_LMS_TO_LINEAR = np.linalg.inv(_LINEAR_TO_LMS)


def srgb_to_oklab(rgb):
    """Oklab coordinates (L in [0, 1]) of sRGB colours given as 0-255 values, shape (n, 3).

    Examples
    --------
    >>> import numpy as np
    >>> srgb_to_oklab(np.array([[255, 255, 255], [0, 0, 0]])).round(4) + 0.0
    array([[1., 0., 0.],
           [0., 0., 0.]])
    """
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return _times(np.cbrt(_times(linear, _LINEAR_TO_LMS)), _LMS_TO_OKLAB)


def oklab_to_srgb(lab):
    """sRGB colours as 0-255 floats (not rounded, clipped to the gamut) of Oklab coordinates."""
    linear = _times(_times(np.asarray(lab, dtype=np.float64), _OKLAB_TO_LMS) ** 3,
                    _LMS_TO_LINEAR)
    linear = np.clip(linear, 0.0, 1.0)
    c = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return c * 255.0


def _times(colours, matrix):
    """``colours @ matrix.T`` by einsum: a matrix product would start BLAS's own threads."""
    return np.einsum("ij,kj->ik", colours, matrix)
