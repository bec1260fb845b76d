"""python -m minunet.nvrtc and minunet.sass on an install without CuPy (the CPU one): which extra to install."""
import sys

import pytest

from minunet import nvrtc, sass


@pytest.fixture
def no_cupy(monkeypatch):
    for name in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ModuleNotFoundError


@pytest.mark.parametrize("command, argv", [(nvrtc.main, ["sgd", "--arch", "sm_86"]),
                                           (sass.main, ["sgd", "--arch", "sm_86", "--dtype", "double"])])
def test_without_cupy_the_commands_name_the_extra_to_install(no_cupy, command, argv, capsys):
    assert command(argv) == 2  # was: ModuleNotFoundError: No module named 'cupy', with a traceback
    err = capsys.readouterr().err
    assert err.startswith("error: minunet.nvrtc needs CuPy") and 'pip install -e ".[cuda13]"' in err
    assert err.count("\n") == 1
