"""Untrusted text made safe to show as one line: booking titles, display names.

`display_text(value, max_len)` is pure. It follows JupyterHub 6's own rule for server
display names (``jupyterhub.slugs.is_valid_display_name``: NFC, printable characters
and single spaces only, no leading or trailing space, 1–255 characters), so whatever it
returns the hub accepts: control characters (NUL, newlines, tabs) and other
whitespace become single spaces; invisible format characters (the bidi embeddings,
overrides and isolates U+202A–U+202E and U+2066–U+2069, zero-width characters, the
BOM), private-use, surrogate and unassigned code points are dropped.
"""

from __future__ import annotations

import unicodedata

from jupyterhub.slugs import printable_unicode_categories_excluding_whitespace as PRINTABLE

DISPLAY_MAX = 255  # JupyterHub's display-name limit (orm.Spawner.display_name is 255)


def display_text(value: object, max_len: int = DISPLAY_MAX) -> str:
    """``value`` as one clean line of at most ``max_len`` characters ("" for non-text)."""
    if not isinstance(value, str) or max_len <= 0:
        return ""
    kept = []
    for char in unicodedata.normalize("NFC", value):
        category = unicodedata.category(char)
        if category in PRINTABLE:
            kept.append(char)
        elif category[0] == "Z" or char.isspace() or category == "Cc":
            kept.append(" ")  # any space, line break or control character: one space
        # else Cf (bidi controls, zero-width), Co, Cs, Cn: dropped
    text = " ".join("".join(kept).split())  # runs of spaces: one; none at either end
    return text[:max_len].rstrip(" ")
