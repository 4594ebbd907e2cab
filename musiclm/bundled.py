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
