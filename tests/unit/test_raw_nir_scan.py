"""The raw-NIR scan that ends every session (``tests/raw_nir_scan.py``) finds what it must."""

from __future__ import annotations

from schemas.identifiers import complete_nir
from tests.raw_nir_scan import raw_nirs


def test_the_scanner_finds_nirs_and_ignores_hashes() -> None:
    nir = complete_nir("1840576451089").encode()  # synthetic, not a real person's
    corsica = complete_nir("284052A123456").encode()
    assert list(raw_nirs(b"\x1e" + nir + b"\x02")) == [1]  # an Avro string
    assert list(raw_nirs(b"subject: " + nir)) == [9]
    assert list(raw_nirs(corsica)) == [0]
    assert list(raw_nirs(nir + b"1790000000000")) == [0], "followed by digits"
    assert list(raw_nirs(nir[:-1] + bytes([nir[-1] ^ 1]))) == [], "wrong control key"
    assert list(raw_nirs(b"sr1_" + b"ab" * 8 + nir + b"cd" * 16)) == [], "inside a hash"
