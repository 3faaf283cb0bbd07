"""What ops accepts as a model name and as an archive to register: names, never paths or URLs.

A .mar is code that TorchServe runs, so ops registers only archives already in the server's model
store, by bare file name; TorchServe's allowed_urls then refuses every URL (config.properties).
"""
from __future__ import annotations

import re

# TorchServe's rule for model names: letters, digits, hyphens and underscores, starting with a
# letter or digit.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.mar")
# A release's version becomes part of an archive's file name: digits, letters, dots, '-' and '_'.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def model_name(text: str) -> str:
    """``text`` without surrounding blanks, when it is a valid model name; else ValueError."""
    name = text.strip()
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"--name {text!r} is not a model name: use letters, digits, '-' and '_', "
                       "starting with a letter or digit")
    return name


def archive_name(text: str) -> str:
    """``text`` when it is a bare ``*.mar`` file name (no folder, no URL); else ValueError."""
    name = text.strip()
    if not ARCHIVE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"--archive {text!r} is not a bare .mar file name: name an archive inside "
                       "the server's model store, without a folder or URL")
    return name


def release_version(text: str) -> str:
    """``text`` when it can stand in a file name (``skin-<version>.mar``); else ValueError."""
    if not VERSION.fullmatch(text) or ".." in text:
        raise ValueError(f"the release's version {text!r} cannot name an archive: use letters, "
                       "digits, '.', '-' and '_', starting with a letter or digit")
    return text
