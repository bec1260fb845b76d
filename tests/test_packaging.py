"""`pip install .` (not editable) must carry the kernels and the simulator's sources into the package."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_kernel_and_the_simulator(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", str(ROOT),
                    "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("minunet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted((ROOT / "kernels").iterdir()):
        assert f"minunet/kernels/{path.name}" in names, f"{path.name} missing from the wheel"
    for path in sorted((ROOT / "minunet").rglob("*.py")):  # every subpackage is listed in pyproject.toml
        name = f"minunet/{path.relative_to(ROOT / 'minunet').as_posix()}"
        assert name in names, f"{name} missing from the wheel: add its package to pyproject.toml's packages"
    for path in sorted((ROOT / "minunet" / "sim").iterdir()):
        if path.suffix in (".py", ".h", ".cpp"):
            assert f"minunet/sim/{path.name}" in names, f"sim/{path.name} missing from the wheel"
