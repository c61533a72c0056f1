"""What ``make dist`` builds is installable and complete: the package is not on PyPI yet, so a
built wheel (or a checkout) is how people install it (README "Install")."""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel, built by the Makefile's own recipe into a folder of this test's."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(["make", "-s", "dist", f"DIST_DIR={out}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=220)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_wheel_holds_the_package_its_types_templates_and_the_provider_entry_point(dist):
    (wheel,) = dist.glob("sf_oauth_provider-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    for name in ("sf_oauth_provider/__init__.py", "sf_oauth_provider/py.typed",
                 "sf_oauth_provider/get_provider_info.py", "sf_oauth_provider/hooks/salesforce_oauth.py",
                 "sf_oauth_provider/emulator/__main__.py", "sf_oauth_provider/operators/audit/templates/audit.html.j2",
                 "sf_oauth_provider/plugins/templates/status.html.j2"):
        assert name in names, name
    assert not any(n.startswith(("tests/", "dags_examples/", "benchmarks/")) for n in names)
    assert re.search(r"\[apache_airflow_provider\]\s*\nprovider_info = sf_oauth_provider\.get_provider_info:"
                     r"get_provider_info", entry_points), entry_points
    assert re.search(r"^Name: sf-oauth-provider$", metadata, re.M)
    assert re.search(r"^License-Expression: Apache-2\.0$", metadata, re.M), metadata[:2000]
    assert f"{info}/licenses/LICENSE" in names


def test_the_sdist_holds_what_a_newcomer_reads(dist):
    (sdist,) = dist.glob("sf_oauth_provider-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "sf_oauth_provider/py.typed"} <= names


def test_the_license_is_the_apache_license_2_0():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(text) > 10_000  # the full text, not a pointer to it
