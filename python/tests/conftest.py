"""Shared fixtures of the conformance suite.

Which sattn is tested: with SATTN_LIBRARY set (ctest sets it to the build tree's
libsattn), the package of this checkout (python/sattn) over that library; otherwise the
installed package with its bundled library.

Expected values come from PyTorch in float64 (features PyTorch has) or from the in-tree
double-precision reference tests/ref/sattn_ref.c, loaded from SATTN_REF_LIBRARY
(features it lacks), never from sattn itself.

With CI set, nothing may be skipped: a missing dependency or a skipped test fails.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
ROOT = os.path.dirname(PKG)
CI = bool(os.environ.get("CI"))

if os.environ.get("SATTN_LIBRARY"):
    sys.path.insert(0, PKG)

if CI:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"CI is set but PyTorch cannot be imported ({e}): the conformance "
                           "suite must run against it in CI") from e


def _ref_path():
    path = os.environ.get("SATTN_REF_LIBRARY")
    if path:
        return path
    default = os.path.join(ROOT, "build", "tests", "libsattn_ref.so")
    return default if os.path.isfile(default) else None


@pytest.fixture(scope="session")
def ref():
    """The double-precision reference (refimpl.Ref)."""
    path = _ref_path()
    if not path:
        pytest.skip("the reference library is not built: set SATTN_REF_LIBRARY to "
                    "build/tests/libsattn_ref.so (target sattn_ref_shared)")
    import refimpl
    return refimpl.Ref(path)


# ---- the largest errors seen, printed at the end of the run ----

_worst = {}


@pytest.fixture(scope="session")
def record():
    """record(what, max_error, allowed): keeps the largest error per comparison kind."""
    def rec(what, err, allowed):
        old = _worst.get(what)
        ratio = err / allowed if allowed > 0 else (0.0 if err == 0 else float("inf"))
        if old is None or ratio > old[2]:
            _worst[what] = (err, allowed, ratio)
    return rec


def pytest_terminal_summary(terminalreporter):
    if not _worst:
        return
    tr = terminalreporter
    tr.section("largest errors (max |sattn - expected| and the tolerance it was held to)")
    for what in sorted(_worst):
        err, allowed, ratio = _worst[what]
        tr.write_line(f"  {what:<52s} {err:10.3g}  allowed {allowed:10.3g}  ({ratio:5.1%} of it)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if CI and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI, where every test must run: {rep.longrepr}"


def pytest_collectreport(report):
    if CI and report.skipped:
        report.outcome = "failed"
