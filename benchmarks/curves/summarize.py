"""Print the Markdown summary table of the committed convergence curves (``benchmarks/curves/<dataset>/*.json``).

Each ``<method>-<preset>.json`` is the ``curve.json`` that ``mribench curve`` wrote next to the model, copied here
with its ``.csv`` and ``.png``. Usage: ``python benchmarks/curves/summarize.py`` (paste the output into README.md).
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows() -> list[str]:
    lines = ["| task | method | preset steps | val. PSNR (dB) | 2x steps | val. PSNR (dB) | gain (dB) | verdict | "
             "training min (preset / 2x) | load avg (1 min, start / end) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for path in sorted(HERE.glob("*/*.json")):
        curve = json.loads(path.read_text())
        minutes, load = curve["training_minutes"], curve["load_average"]
        lines.append(f"| {path.parent.name} | {curve['method']['name']} | {curve['preset_steps']} | "
                     f"{curve['psnr_at_preset_steps']:.2f} | {curve['scaled_steps']} | "
                     f"{curve['psnr_at_scaled_steps']:.2f} | {curve['gain_db']:+.3f} | {curve['verdict']} | "
                     f"{minutes['preset']:.1f} / {minutes['scaled']:.1f} | "
                     f"{load['before'][0]:.1f} / {load['after'][0]:.1f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
