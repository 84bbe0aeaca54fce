"""Numeric CSV in and out with numpy: the local backend's data format, no dataframe library needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and a 2-D float array; raises ValueError naming the file when it is not numeric CSV."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
        try:
            values = np.loadtxt(handle, delimiter=",", ndmin=2)
        except ValueError as exc:
            raise ValueError(f"{path}: not a numeric CSV: {exc}") from None
    if values.size and values.shape[1] != len(header):
        raise ValueError(f"{path}: {values.shape[1]} columns but {len(header)} header names")
    return header, values.reshape(-1, len(header))


def read_many(paths: list[Path]) -> tuple[list[str], np.ndarray]:
    """Concatenate CSVs that share one header."""
    if not paths:
        raise ValueError("no CSV files to read")
    header, first = read_csv(paths[0])
    parts = [first]
    for path in paths[1:]:
        other, values = read_csv(path)
        if other != header:
            raise ValueError(f"{path}: header {other} differs from {paths[0]}: {header}")
        parts.append(values)
    return header, np.vstack(parts)


def write_csv(path: Path, header: list[str], values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, values, delimiter=",", header=",".join(header), comments="", fmt="%.6g")


def count_rows(path: Path) -> int:
    """Data rows in a CSV (lines after the header), without parsing it."""
    with open(path, "rb") as handle:
        return max(sum(1 for line in handle if line.strip()) - 1, 0)
