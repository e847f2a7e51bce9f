"""The bytes-per-update benchmark's accounting (benchmarks/wire.py, benchmarks/update.py), without
a boot: the server counts every byte it writes per request and step, the check's allocated sizes
are read back, the padded stand-in keeps the ELF, and a choice the option table lacks is skipped."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import update
from benchmarks.wire import SERVE_FILE, Sent, counting_server
from build.core.errors import BuildError
from build.formats.gpt import write_gpt_image
from build.model.ddi import derived_uuid
from tests.e2e.fleet import LINK_DIR, A, B, image, version_line
from tests.gptparts import SEED, ddi_partitions


def raw_get(url: str, path: str) -> bytes:
    """Everything the server sends for GET `path` (HTTP/1.0: it closes when done)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        received = b""
        while chunk := conn.recv(1 << 16):
            received += chunk
    return received


def test_the_server_counts_every_byte_it_writes_per_request_and_step(tmp_path: Path) -> None:
    steps, shared = tmp_path / "steps", tmp_path / "shared"
    (steps / "0").mkdir(parents=True)
    (steps / "1").mkdir()
    (steps / "0" / "SHA256SUMS").write_bytes(b"a" * 100)
    (steps / "1" / "SHA256SUMS").write_bytes(b"b" * 200)
    (steps / "1" / "image.raw.xz").write_bytes(bytes(range(256)) * 4096)
    with counting_server(steps, shared) as server:
        first = raw_get(server.url, "/SHA256SUMS")
        (shared / SERVE_FILE).write_text("1\n")
        second = raw_get(server.url, "/SHA256SUMS")
        third = raw_get(server.url, "/image.raw.xz")
        missing = raw_get(server.url, "/SHA256SUMS.gpg")
        sent = list(server.ledger.sent)
    assert first.endswith(b"a" * 100) and second.endswith(b"b" * 200)
    assert [(s.step, s.path, s.status) for s in sent] == [
        ("0", "/SHA256SUMS", "200"),
        ("1", "/SHA256SUMS", "200"),
        ("1", "/image.raw.xz", "200"),
        ("1", "/SHA256SUMS.gpg", "404"),
    ]
    # What the client received, headers and error pages included: not the files' sizes.
    assert [s.bytes for s in sent] == [len(first), len(second), len(third), len(missing)]
    assert server.ledger.bytes_of("1") == len(second) + len(third) + len(missing)
    assert server.ledger.bytes_of("1") > 200 + 256 * 4096
    assert server.ledger.paths_of("0") == ["/SHA256SUMS"]
    assert server.ledger.bytes_of("1", since=3) == len(missing)
    assert server.ledger.paths_of("1", since=2) == ["/image.raw.xz", "/SHA256SUMS.gpg"]
    assert server.ledger.of("1", since=2) == sent[2:]
    assert server.requests[-1] == "/SHA256SUMS.gpg 404"


def test_allocated_sizes_are_read_from_the_check_results() -> None:
    line = "alloy-5.5.5-amd64.raw=16392*512 alloy-5.5.6-amd64.raw=8*4096"
    assert update.allocated(line) == {
        "alloy-5.5.5-amd64.raw": 16392 * 512,
        "alloy-5.5.6-amd64.raw": 8 * 4096,
    }
    assert update.allocated("") == {}
    with pytest.raises(ValueError, match="NAME=BLOCKS"):
        update.allocated("alloy-5.5.6-amd64.raw=8")


def test_the_padded_stand_in_is_the_elf_then_the_go_binarys_bytes() -> None:
    elf, go = b"\x7fELF" + b"e" * 60, bytes(range(256)) * 8
    made = update.padded(elf, go, 1000)
    assert len(made) == 1000 and made.startswith(elf) and made[64:] == go[64:1000]
    with pytest.raises(ValueError):
        update.padded(elf, go, len(go) + 1)


def test_a_choice_the_option_table_lacks_is_skipped_with_its_reason() -> None:
    assert update.why_skipped(update.Choice("x", ("--format=erofs", "--compression=none"))) is None
    why = update.why_skipped(update.Choice("x", ("--format=squashfs", "--compression=bogus")))
    assert why is not None and "--format=squashfs offers no --compression=bogus" in why
    assert "no --transport=lz" in (
        update.why_skipped(update.Choice("x", ("--format=erofs", "--compression=none"), "lz")) or ""
    )
    labels = [choice.label for choice in update.CHOICES]
    assert "squashfs none + xz transport" in labels
    assert len(set(labels)) == len(labels)


def figures(label: str, sent: int, readback: float) -> update.Figures:
    return update.Figures(
        label, "systemd 257", sent, (sent,), (), 1000, 1000, 1.0, None, readback, (900, 1100, 1000)
    )


def test_the_goal_line_says_whether_issue_25s_figure_is_met() -> None:
    xz_transport, squashfs_xz = update.GOAL
    met = update.goal_line([figures(squashfs_xz, 1000, 1.2), figures(xz_transport, 900, 0.1)])
    assert "0.900x the bytes sent (fewer)" in met and "12x faster (at least" in met
    missed = update.goal_line([figures(squashfs_xz, 1000, 1.2), figures(xz_transport, 1000, 0.2)])
    assert "**not fewer**" in missed and "6x faster (**less than**" in missed
    assert update.goal_line([figures(squashfs_xz, 1000, 1.2)]) == ""
    table = update.format_update_table(
        [figures(squashfs_xz, 1000, 1.2), figures(xz_transport, 900, 0.1)], {"other": "why"}
    )
    assert "| 0.900x |" in table and "| other | — | skipped: why |" in table
    assert "| 1.00 s (0.90-1.10) |" in table


def test_a_signed_ddi_choice_is_measured_for_each_erofs_choice() -> None:
    signed = {c.label: c for c in update.CHOICES if c.signed}
    assert {(c.flag("compression"), c.transport) for c in signed.values()} == {
        ("lz4hc", "none"),
        ("none", "xz"),
        ("none", "zstd"),
    }
    for choice in signed.values():
        assert choice.flag("format") == "ddi" and update.why_skipped(choice) is None
        assert choice.root == ("testing" if choice.transport == "zstd" else "trixie")


def test_the_image_counts_once_only_when_sent_whole() -> None:
    name = "alloy-5.5.6-amd64.raw.xz"
    sums = Sent("1", "/SHA256SUMS", "200", 300)
    whole = Sent("1", f"/{name}", "200", 1200)
    assert update.image_sends([sums, whole], name, 1000) == (1, 0)
    assert update.image_sends([sums, whole, whole], name, 1000) == (2, 0)
    cut = Sent("1", f"/{name}", "200", 999)  # headers and all, fewer than the file's bytes
    assert update.image_sends([cut], name, 1000) == (0, 1)
    assert update.image_sends([Sent("1", f"/{name}", "404", 5000)], name, 1000) == (0, 1)
    other = Sent("1", "/alloy-5.5.6-amd64.raw", "200", 5000)  # the plain file is not the one
    assert update.image_sends([other], name, 1000) == (0, 0)


NEW = f"{LINK_DIR}/{image(B)}"


def results(**changed: str) -> dict[str, str]:
    """check-update.sh's results of a signed DDI update on the nspawn host, as seen."""
    seen = {
        "active_0": "inactive/dead",
        "update_status_1": "0",
        "link_1": NEW,
        "version_1": "/etc/alloy-e2e/check.sh: 42: alloy: not found",
        "ready_1": "000",
        "instances_1": f"{image(A)} {image(B)}",
    }
    return {**seen, **changed}


def test_a_signed_ddis_update_is_judged_by_what_it_installed() -> None:
    said = update.unmerged_outcome(results(), B)
    assert said.startswith("installed and linked (update exit 0), not merged; alloy never ran")
    back = update.unmerged_outcome(
        results(link_1=f"{LINK_DIR}/{image(A)}", update_status_1="1", active_0="active/running"),
        B,
    )
    assert back.startswith(f"installed, link back on {image(A)} (exit 1); alloy ran before")
    with pytest.raises(ValueError, match=f"{image(B)} was not installed .*update exit 1"):
        update.unmerged_outcome(results(instances_1=image(A), update_status_1="1"), B)
    with pytest.raises(ValueError, match="this host has dm-verity"):
        update.unmerged_outcome(results(version_1=version_line(B), ready_1="200"), B)


def test_a_ddis_data_partition_is_found_by_its_gpt(tmp_path: Path) -> None:
    payloads = []
    for index, body in enumerate((b"\1" * 303104, b"\2" * 8192, b"{}")):
        payloads.append(tmp_path / f"payload{index}")
        payloads[-1].write_bytes(body)
    ddi = tmp_path / "alloy.raw"
    write_gpt_image(
        ddi,
        derived_uuid(SEED, "disk-uuid"),
        ddi_partitions("amd64", (303104, 8192, 16384), payloads),
    )
    offset, size = update.data_partition(ddi)
    with ddi.open("rb") as image_file:
        image_file.seek(offset)
        assert image_file.read(size).rstrip(b"\0") == b"\1" * 303104
    plain = tmp_path / "plain.raw"
    plain.write_bytes(b"\0" * 8192)
    with pytest.raises(BuildError, match=r"plain\.raw"):
        update.data_partition(plain)


def test_a_signed_ddi_row_says_why_it_has_no_time_to_ready() -> None:
    plain = figures("EROFS lz4hc", 1000, 0.1)
    ddi = update.Figures(
        "signed DDI, EROFS lz4hc", "systemd 257", 1100, (1100,), (), 900, 1000, 1.0, None, 0.1,
        (), "installed and linked",
    )  # fmt: skip
    table = update.format_update_table([plain, ddi], {})
    assert table.splitlines()[-1].endswith("| 0.100 s | — (no dm-verity: never merged) |")
    note = update.unmerged_note([plain, ddi, replace(ddi, label="other DDI")])
    assert note.startswith(update.UNMERGED)
    assert note.endswith(" signed DDI, EROFS lz4hc | other DDI: installed and linked.")
    assert update.unmerged_note([plain]) == ""
