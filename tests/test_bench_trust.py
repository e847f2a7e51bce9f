"""The trust costs benchmark (benchmarks/trust.py) on a small tree: it measures the real signed
DDI (checked offline with the certificate it was signed with), within the issue's size goal,
and refuses to call a DDI signed by another certificate its own. Figures are printed by
`nox -s bench`, never asserted here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import trust
from benchmarks.common import Case
from build.read.ddi import check_ddi
from tests.erofs_images import alloy_tree

pytestmark = pytest.mark.needs("mkfs.erofs", "openssl")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, list[trust.TrustRow]]:
    where = tmp_path_factory.mktemp("trust")
    case = Case(where / "work", "http://127.0.0.1:9", "1.10.2", runs=1, heavy_runs=1)
    return case, trust.measure_trust(case, alloy_tree(where / "tree", binary_size=10 << 20))


def test_every_figure_is_measured_and_the_ddi_meets_the_size_goal(
    measured: tuple[Case, list[trust.TrustRow]],
) -> None:
    _, rows = measured
    by_name = {row.figure.split(" (")[0]: row for row in rows}
    signed = by_name["signed DDI"]
    assert signed.against == by_name["bare EROFS image, as --format=erofs packs it"].value
    assert signed.met and by_name["unsigned verity DDI vs the bare EROFS image"].met
    assert signed.value > by_name["unsigned verity DDI vs the bare EROFS image"].value
    assert len(by_name["assemble the DDI, signed vs unsigned"].ratios) == 3  # runs + 2 pairs
    rss = by_name["peak RSS of a Python process running check_ddi vs before the call"]
    assert rss.unit == "MB" and rss.against is not None and rss.value >= rss.against > 0
    verify = next(row for row in rows if row.figure.startswith("whole `invoke verify --image"))
    assert len(verify.ratios) == 1 and verify.against  # runs pairs, both verifies passed
    verify_rss = by_name["peak RSS of `invoke verify`, the signed DDI vs the bare EROFS image"]
    assert verify_rss.against and verify_rss.value > 0
    assert all(row.value > 0 for row in rows)


def test_the_measured_ddi_is_signed_and_checks_offline(
    measured: tuple[Case, list[trust.TrustRow]],
) -> None:
    case, _ = measured
    image = case.work / "signed.ddi.raw"
    checked = check_ddi(image, "amd64", signed=True)
    assert checked.signature is not None
    region = (checked.signature.offset, checked.signature.size)
    assert trust.check_signature_part(image, region, case.work / "verity.crt") == checked.root_hash
    check_ddi(case.work / "unsigned.ddi.raw", "amd64", signed=False)


def test_another_certificate_is_not_taken_for_the_signer(
    measured: tuple[Case, list[trust.TrustRow]], tmp_path: Path
) -> None:
    case, _ = measured
    _, other = trust.make_key(tmp_path)
    image = tmp_path / "signed.raw"
    shutil.copy(case.work / "signed.ddi.raw", image)
    signature = check_ddi(image, "amd64", signed=True).signature
    assert signature is not None
    with pytest.raises(SystemExit, match="signed with another certificate"):
        trust.check_signature_part(image, (signature.offset, signature.size), other)
