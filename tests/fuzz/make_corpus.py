#!/usr/bin/env python3
"""Writes the seed corpus of the checkpoint fuzz target: a valid checkpoint
saved by the library (fuzz_checkpoint_replay --write-seed) and mutations of it,
one per class of hostile file that issue 10 found (each must be refused with
FWP_ERR_FORMAT). Usage: make_corpus.py SEED_FILE CORPUS_DIR
"""

import json
import struct
import sys
from pathlib import Path


def split(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header, body: bytes, raw_header: str = None) -> bytes:
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + body


def main() -> int:
    seed_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    seed = seed_path.read_bytes()
    header, body = split(seed)
    meta = header["__metadata__"]
    cases = {"valid": seed}

    def with_meta(key, value):
        h = json.loads(json.dumps(header))
        h["__metadata__"][key] = value
        return join(h, body)

    cases["truncated"] = seed[:len(seed) // 2]
    cases["header_length_huge"] = b"\xff" * 8 + seed[8:]
    cases["nested_model_config"] = with_meta("model", "[" * 5000 + "]" * 5000)
    cases["zero_model_rng"] = with_meta("model_rng", json.dumps(["0"] * 6))
    data = json.loads(meta["data"])
    data["state"]["rng"] = ["0"] * 6
    cases["zero_data_rng"] = with_meta("data", json.dumps(data))
    # A NaN in the first tensor of the data section.
    first = min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    begin = header[first]["data_offsets"][0]
    cases["nan_parameter"] = join(header, body[:begin] + struct.pack("<f", float("nan")) + body[begin + 4:])
    # A negative second moment.
    sq = next(k for k in header if k.endswith("/exp_avg_sq"))
    b = header[sq]["data_offsets"][0]
    cases["negative_moment"] = join(header, body[:b] + struct.pack("<f", -1.0) + body[b + 4:])
    h = json.loads(json.dumps(header))
    h["extra"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(body), len(body) + 4]}
    cases["unknown_tensor"] = join(h, body + b"\0\0\0\0")
    cases["trailing_bytes"] = join(header, body + b"\0" * 8)
    h = json.loads(json.dumps(header))
    h[first]["data_offsets"] = [begin + 4, h[first]["data_offsets"][1] + 4]
    cases["overlapping_tensors"] = join(h, body)
    text = json.dumps(header, separators=(",", ":"))
    cases["repeated_key"] = join(None, body, text[:-1] + ',"__metadata__":{}}')
    config = json.loads(meta["model"])
    config["num_keys"] = 60000
    cases["huge_config"] = with_meta("model", json.dumps(config))
    for name, content in cases.items():
        (out / f"seed_{name}.safetensors").write_bytes(content)
    print(f"make_corpus: {len(cases)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
