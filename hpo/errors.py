"""The one exception type that means "the user asked for something wrong".

The CLI prints its message on one line and exits with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a spec, a path, a storage URL or a study name the user gave us."""
