"""Which errors are the user's to fix, which are the machine's, and which are bugs.

One classification for every front end: the CLI prints user and system errors as one line
(exit 2 and 1), the widget shows them as a notification; anything else is a bug and keeps its
traceback (napari shows it in its error dialog). The error classes stay where they are raised:
`StackError` (engine.stack), `OutputPathError` (io), `FusionError` (api) are ValueErrors,
`WeightsError` (models.weights) a RuntimeError. Imports no torch, napari or Qt.
"""

from __future__ import annotations

import sys

from .models.weights import WeightsError

#: Errors whose message says what to change: the input, the options, the weights.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, WeightsError, FileNotFoundError)


def system_errors() -> tuple[type[BaseException], ...]:
    """Errors of the machine rather than the input: files, memory (torch's out-of-memory error
    once torch is imported), a weights file that is not safetensors or is damaged. Not any other
    RuntimeError: a bug (in torch or here) keeps its traceback."""
    errors: list[type[BaseException]] = [OSError, MemoryError]
    torch = sys.modules.get("torch")
    if torch is not None:
        errors.append(torch.cuda.OutOfMemoryError)
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None:
        errors.append(safetensors.SafetensorError)
    return tuple(errors)


def expected_errors() -> tuple[type[BaseException], ...]:
    """User and system errors: what a front end reports as a message, not as a traceback."""
    return USER_ERRORS + system_errors()
