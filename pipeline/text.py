"""Stats as a person reads them: counts by reason, angles in yaw, pitch, roll order, rounded numbers.

The run's JSON files keep full precision and sorted keys (`storage.write_json`); everything printed
by `pltd build` and `pltd inspect` goes through these, never through a Python dict's repr.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ANGLES = ("yaw", "pitch", "roll")  # the PLTD's order (README, pose sign convention)


def counts_text(counts: Mapping[str, int] | int | None) -> str:
    """{'decode_error': 2, 'empty_file': 1} → '3 (decode_error 2, empty_file 1)'; None/{} → '0'."""
    if not counts:
        return "0"
    if isinstance(counts, int):
        return f"{counts:,}"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{sum(counts.values()):,} (" + ", ".join(f"{k} {v:,}" for k, v in items) + ")"


def angles_text(values: Mapping[str, float], unit: str = "°") -> str:
    """{'pitch': 3.1, 'roll': 2.0, 'yaw': 20.4} → 'yaw 20.4°, pitch 3.1°, roll 2.0°' (the PLTD's order)."""
    return ", ".join(f"{k} {values[k]:.1f}{unit}" for k in ANGLES if k in values)


def buckets_text(buckets: Mapping[str, int]) -> str:
    """Yaw buckets in the order of their ranges: '0-30°: 120, 30-60°: 40, 60-90+°: 3'."""

    def low(key: str) -> float:
        head = key.split("-", 1)[0]
        return float(head) if head.replace(".", "", 1).isdigit() else float("inf")

    return ", ".join(f"{k}°: {v:,}" for k, v in sorted(buckets.items(), key=lambda kv: low(kv[0])))


def numbers_text(values: Sequence[float] | None, digits: int = 4) -> str:
    """[0.97412345, 0.5] → '0.9741, 0.5000'; None → 'none'."""
    if values is None:
        return "none"
    return ", ".join(f"{v:.{digits}f}" for v in values)


def kept_text(kept: Mapping[str, int]) -> str:
    """Selective fitting's samples kept → '3 samples: 120, 4 samples: 5' (by the number kept)."""
    return ", ".join(f"{k} samples: {v:,}" for k, v in sorted(kept.items(), key=lambda kv: int(kv[0]))) or "none"
