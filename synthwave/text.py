"""Text made safe to name things by (task runs, artifact keys)."""

from __future__ import annotations

import re


def slug(text: str, length: int = 40) -> str:
    """Lower-case letters and digits joined by single dashes, at most `length` long; "" for none."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-")
