"""Every docstring example in the livelearn package runs and shows what it prints.

One test per module of the *imported* package: the modules are found by walking
``livelearn.__path__``, so this checks an installed wheel as well as the source
tree on ``PYTHONPATH=python``. (``pytest --doctest-modules python/livelearn``
cannot: it imports the source files, and a clone tested against the installed
wheel has no compiled ``_core`` there.)

A module that needs an optional extra which is not installed (``ray``, say) is
skipped, naming the missing package; any other import error fails its test.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import livelearn

# Import names of the optional extras (pyproject's [project.optional-dependencies]),
# plus pandas, which the River and scikit-learn extras bring.
OPTIONAL_PACKAGES = frozenset(
    {"matplotlib", "pandas", "prometheus_client", "pyarrow", "ray", "river", "sklearn"}
)


def _module_names() -> list[str]:
    names = [livelearn.__name__]
    # onerror: a subpackage that cannot be imported is still listed (its own
    # test reports why) instead of breaking the collection of all the others.
    for info in pkgutil.walk_packages(livelearn.__path__, "livelearn.", onerror=lambda _: None):
        names.append(info.name)
    return sorted(names)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing in OPTIONAL_PACKAGES:
            pytest.skip(f"{name} needs the optional package {missing!r}, which is not installed")
        raise


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples(name: str) -> None:
    module = _import(name)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module):
        try:
            runner.run(test, out=report.append)
        finally:
            test.globs.clear()  # engines and threads the examples made can go
    if runner.failures:
        pytest.fail(
            f"{runner.failures} of {runner.tries} docstring examples in {name} failed:\n"
            + "".join(report),
            pytrace=False,
        )


def test_the_walk_finds_the_package() -> None:
    """Guards the discovery itself: an empty or partial walk would pass vacuously."""
    names = _module_names()
    assert {"livelearn", "livelearn.datasets.simulator", "livelearn.distributed.ray"} <= set(names)
    assert all(name == "livelearn" or name.startswith("livelearn.") for name in names)
