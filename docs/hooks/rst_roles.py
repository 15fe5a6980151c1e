"""A griffe extension: render the Sphinx roles of livelearn's docstrings as code.

The docstrings are written for both ``help()`` and Sphinx-style readers and use
roles such as ``:class:`~livelearn.Engine``` and ``:meth:`Engine.stats```.
mkdocstrings does not interpret roles, so this turns each into inline code
(``Engine``, ``Engine.stats``); a leading ``~`` keeps only the last dotted part.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = _ROLE.sub(_replace, obj.docstring.value)


class RstRoles(griffe.Extension):
    """Rewrite roles in the docstrings of every loaded object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called by griffe for each module, class, function and attribute it loads."""
        _rewrite(obj)
