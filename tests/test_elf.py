"""build.image.elf: refuse any binary that cannot run on the target architecture."""

from __future__ import annotations

import pytest

from build.core.errors import BuildError
from build.image.elf import HEADER_SIZE, check_elf_header
from build.model.arch import ARCHES
from tests.fakes import MACHINES, elf_binary

AMD64, ARM64 = ARCHES["amd64"], ARCHES["arm64"]
WHAT = "alloy-linux-amd64 in alloy-linux-amd64.zip"


def header(machine: int = 62, elf_type: int = 2) -> bytearray:
    return bytearray(elf_binary(machine, size=64, elf_type=elf_type))


def refusal(data: bytes | bytearray, arch=AMD64) -> str:
    with pytest.raises(BuildError) as caught:
        check_elf_header(bytes(data), arch, WHAT)
    return str(caught.value)


@pytest.mark.parametrize("elf_type", [2, 3], ids=["ET_EXEC", "ET_DYN"])
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_accepts_matching_machine(arch: str, elf_type: int) -> None:
    data = header(MACHINES[arch], elf_type)
    assert check_elf_header(bytes(data), ARCHES[arch], WHAT) is None
    # Exactly the bytes the stage step reads are enough.
    assert check_elf_header(bytes(data[:HEADER_SIZE]), ARCHES[arch], WHAT) is None


def test_refuses_aarch64_binary_for_amd64() -> None:
    text = refusal(header(183), AMD64)
    assert f"{WHAT} is built for AArch64, not x86-64" in text
    assert "--arch=amd64" in text


def test_refuses_x86_64_binary_for_arm64() -> None:
    text = refusal(header(62), ARM64)
    assert "is built for x86-64, not AArch64" in text
    assert "--arch=arm64" in text


def test_refuses_unknown_machine_by_number() -> None:
    assert "is built for machine 9999, not x86-64" in refusal(header(9999), AMD64)


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04" + bytes(60),  # a zip
        b"#!/bin/sh\necho hello world\n",
        b"\x7fELG" + bytes(60),
        bytes(64),
    ],
    ids=["zip", "script", "bad-magic", "zeros"],
)
def test_refuses_non_elf(data: bytes) -> None:
    assert f"{WHAT} is not an ELF executable" in refusal(data)


@pytest.mark.parametrize("length", [0, 4, 16, HEADER_SIZE - 1])
def test_refuses_truncated_header(length: int) -> None:
    assert f"{WHAT} is not an ELF executable" in refusal(header()[:length])


def test_refuses_32_bit_class() -> None:
    data = header()
    data[4] = 1  # ELFCLASS32
    text = refusal(data)
    assert "is not a 64-bit little-endian ELF file" in text
    assert "expected a x86-64 binary for --arch=amd64" in text


def test_refuses_big_endian() -> None:
    data = header()
    data[5] = 2  # ELFDATA2MSB
    assert "is not a 64-bit little-endian ELF file" in refusal(data)


@pytest.mark.parametrize("elf_type", [0, 1, 4], ids=["ET_NONE", "ET_REL", "ET_CORE"])
def test_refuses_non_executable_types(elf_type: int) -> None:
    text = refusal(header(62, elf_type))
    assert f"{WHAT} is an ELF file but not an executable (type {elf_type})" in text
