"""The Examples sections of the Python layer's docstrings run as doctests."""

import doctest
import importlib
import inspect
import re

import pytest

#: The Python layer's modules, and whether their docstrings must hold examples.
MODULES = {
    "fastkm": False,
    "fastkm._kmeans": True,
    "fastkm._minibatch": True,
    "fastkm._chunked": False,
    "fastkm._config": True,
    "fastkm._lloyd": False,
    "fastkm._init": False,
    "fastkm._validation": False,
    "fastkm._isa": False,
    "fastkm._scratch": True,
    "fastkm.cli": False,
    "fastkm.image": False,
    "fastkm.image._quantize": True,
    "fastkm.image._io": True,
    "fastkm.image._compare": True,
    "fastkm.image._color": True,
    "fastkm.plot": True,
    "fastkm.dask": False,
}

#: The optional dependency that a module, or its examples, need: skipped without it.
REQUIRES = {
    "fastkm.plot": "matplotlib",
    "fastkm.dask": "dask.array",
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name in REQUIRES:
        pytest.importorskip(REQUIRES[name])
    module = importlib.import_module(name)
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.failed == 0
    if MODULES[name]:
        assert result.attempted > 0


def test_public_api_is_documented():
    import fastkm

    for name in fastkm.__all__:
        obj = getattr(fastkm, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
    for method in ("fit", "predict", "transform", "fit_predict", "fit_transform", "score",
                   "get_params", "set_params"):
        assert getattr(fastkm.KMeans, method).__doc__, method


def _documented_parameters(func):
    """Names with an entry under ``Parameters`` (``name : type``, or ``a, b`` sharing one)."""
    doc = inspect.getdoc(func) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?:^\w[\w ]*\n-+\n|\Z)", doc, re.M | re.S)
    assert section, f"{func.__qualname__} has no Parameters section"
    names = set()
    for line in section.group(1).splitlines():
        entry = re.match(r"^(\*{0,2}\w+(?:, \w+)*)(?: :|$)", line)
        if entry:
            names.update(name.lstrip("*") for name in entry.group(1).split(", "))
    return names


def _signature_parameters(func):
    return {name for name in inspect.signature(func).parameters if name != "self"}


def test_public_functions_and_methods_document_every_parameter():
    import fastkm
    import fastkm.image

    functions = [fastkm.kmeans, fastkm.image.quantize, fastkm.image.fit_palette,
                 fastkm.image.apply_palette, fastkm.image.load_image]
    for cls in (fastkm.KMeans, fastkm.MiniBatchKMeans):
        functions += [getattr(cls, name) for name in ("fit", "predict", "transform",
                                                       "fit_predict", "fit_transform",
                                                       "score")]
    functions.append(fastkm.MiniBatchKMeans.partial_fit)
    for func in functions:
        assert _documented_parameters(func) == _signature_parameters(func), \
            func.__qualname__


def test_dask_methods_document_every_parameter():
    pytest.importorskip("dask.array")
    import fastkm.dask

    for name in ("predict", "transform", "fit_predict", "fit_transform", "score"):
        method = getattr(fastkm.dask.KMeans, name)
        assert _documented_parameters(method) == _signature_parameters(method), name


def test_image_public_names_are_documented():
    import fastkm.image

    for name in fastkm.image.__all__:
        obj = getattr(fastkm.image, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
        assert f"{name}`" in fastkm.image.__doc__, f"{name} is not in fastkm.image's docstring"
