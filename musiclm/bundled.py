"""Where the models bundled with the package live, and how a user points a command at another one."""

from __future__ import annotations

import os
from pathlib import Path

PRETRAINED = Path(__file__).resolve().parent / "pretrained"


def model_env(component: str) -> str:
    """The environment variable that overrides a component's model folder, e.g. ``MUSICLM_CODEC``."""
    return f"MUSICLM_{component.upper()}"


def default_model_dir(component: str) -> Path:
    """``$MUSICLM_<COMPONENT>`` if set, else the bundled folder ``musiclm/pretrained/<component>``."""
    env = os.environ.get(model_env(component))
    return Path(env) if env else PRETRAINED / component


def component_folder(model: str | os.PathLike[str] | None, component: str, what: str,
                     error: type[Exception]) -> Path:
    """The folder of a command's ``--model`` (else :func:`default_model_dir`); ``error`` names ``what`` was
    expected and how to make one when the folder does not exist."""
    folder = Path(model) if model else default_model_dir(component)
    if not folder.exists():
        raise error(f"no {what} at {folder}; pass --model DIR (made by `musiclm {component} export`) "
                    f"or set ${model_env(component)}")
    return folder
