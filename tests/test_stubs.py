"""_core.pyi describes the compiled kernels: same functions, same parameter names."""

import ast
import inspect
from pathlib import Path

import fastkm
from fastkm._isa import core


def test_stub_matches_the_compiled_module():
    stub = Path(fastkm.__file__).with_name("_core.pyi")
    assert stub.exists(), "the type stub is not installed beside the package"
    functions = {node.name: [arg.arg for arg in node.args.args]
                 for node in ast.parse(stub.read_text()).body
                 if isinstance(node, ast.FunctionDef)}
    compiled = {name for name, obj in vars(core).items()
                if callable(obj) and not name.startswith("_") and
                getattr(obj, "__module__", core.__name__) == core.__name__}
    assert set(functions) == compiled
    for name, parameters in functions.items():
        assert list(inspect.signature(getattr(core, name)).parameters) == parameters, name
    assert Path(fastkm.__file__).with_name("py.typed").exists()
