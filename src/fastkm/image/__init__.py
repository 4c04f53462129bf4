"""Colour quantization: reduce an image to its K most representative colours.

* :func:`quantize`: one image to K colours (k-means on its exact colour histogram);
* :func:`fit_palette` and :func:`apply_palette`: one palette shared by many images;
* :class:`QuantizedImage`: the result, with ``to_pil``, ``to_array``, ``save``, ``mse`` and
  ``psnr``;
* :func:`load_image`: an image (a path, a PIL image or an array) as uint8 RGB or RGBA
  pixels, with its ICC profile, path and metadata (a :class:`LoadedImage`), as the
  functions above read their input.

The k-means and remapping live in ``_quantize``; reading and writing images in ``_io``;
sRGB/Oklab conversions in ``_color``; the side-by-side comparison picture in ``_compare``.
"""

from ._io import LoadedImage, load_image
from ._quantize import QuantizedImage, apply_palette, fit_palette, quantize

__all__ = ["LoadedImage", "QuantizedImage", "apply_palette", "fit_palette", "load_image",
           "quantize"]
