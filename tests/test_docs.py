"""The Examples sections of the Python layer's docstrings run as doctests."""

import doctest
import importlib

import pytest

#: The core Python layer, and whether its docstrings must hold examples.
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
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
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
