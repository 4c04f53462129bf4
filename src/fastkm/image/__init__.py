"""Colour quantization: reduce an image to its K most representative colours.

* :func:`quantize`: one image to K colours (k-means on its exact colour histogram);
* :func:`fit_palette` and :func:`apply_palette`: one palette shared by many images;
* :class:`QuantizedImage`: the result, with ``to_pil``, ``to_array``, ``save``, ``mse`` and
  ``psnr``.

Image reading and writing live in ``fastkm.image._io``; colour-space conversions in
``fastkm.image._color``.
"""
