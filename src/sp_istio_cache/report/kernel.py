"""The Jupyter kernel the report runs on: the workbench's own virtualenv, registered by name.

papermill resolves ``kernel_name`` through the kernelspecs Jupyter finds; a spec installed with
``--sys-prefix`` lives inside the venv (``<venv>/share/jupyter/kernels/<name>``), so the report
never depends on a user-wide ``python3`` kernel pointing at some other interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

KERNEL_NAME = "sp-istio-cache"
DISPLAY_NAME = "Python (sp-istio-cache)"


class KernelError(RuntimeError):
    """The kernelspec could not be registered; carries ipykernel's output."""


def _spec_python(name: str) -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return None
    return spec.argv[0] if spec.argv else None


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Register ``name`` for this interpreter (``python -m ipykernel install --sys-prefix``)
    unless a spec of that name already runs this interpreter; return the name.

    Raises:
        KernelError: ipykernel install failed.
    """
    current = _spec_python(name)
    if current is not None and Path(current).resolve() == Path(sys.executable).resolve():
        return name
    cmd = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name,
           "--display-name", DISPLAY_NAME]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KernelError(f"cannot register kernel {name!r} ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
    current = _spec_python(name)
    if current is None:
        raise KernelError(f"kernel {name!r} installed but Jupyter does not find it "
                          f"(jupyter --paths must include {sys.prefix}/share/jupyter)")
    if Path(current).resolve() != Path(sys.executable).resolve():
        raise KernelError(f"kernel {name!r} runs {current}, not this interpreter {sys.executable}: a "
                          f"user-wide spec of that name shadows the venv's; remove it or pass --kernel")
    return name
