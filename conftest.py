"""pytest set-up shared by python/tests (the keel package) and tests/ (end-to-end).

The keel package is imported from the build tree (KEEL_BUILD_DIR, default ./build), where
`make build` leaves build/python/keel ready to import, and the `keel` binary from
build/tools/keel/keel.
"""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
BUILD = pathlib.Path(os.environ.get("KEEL_BUILD_DIR", ROOT / "build")).resolve()

if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
    raise pytest.UsageError(
        f"run the tests with /usr/bin/python3 (Debian's python3-torch), not {sys.executable}")

sys.path.insert(0, str(BUILD / "python"))


@pytest.fixture(scope="session")
def keel_bin():
    path = BUILD / "tools" / "keel" / "keel"
    if not path.exists():
        raise pytest.UsageError(f"{path} not found: run `make build` first")
    return str(path)
