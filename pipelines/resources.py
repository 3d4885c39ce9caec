"""Where the files the package reads at run time are: ``sql/`` and ``schemas/``.

They live at the top of the repository (the single source) and the wheel carries them as
``pipelines/_resources/`` (see ``pyproject.toml``). Installed, they are found inside the package with
``importlib.resources``; in a source checkout or an editable install, at the top of the checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """The directory ``sql`` or ``schemas``, installed or in the checkout."""
    packaged = Path(str(files("pipelines") / "_resources" / name))
    if packaged.is_dir():
        return packaged
    checkout = _CHECKOUT / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"Neither {packaged} nor {checkout} exists: the package was built without its {name}/ files; "
        "reinstall it from a wheel built by `pip wheel .`."
    )
