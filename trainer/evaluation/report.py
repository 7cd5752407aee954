"""Evaluation reports: JSON, a Markdown table laid out like the paper's, and PNG curves."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path


def markdown(kind: str, r: dict) -> str:
    lines = [f"# {kind} — {r['model']}", "", f"Data: `{r['data']}`; {r['date']}", ""]
    res = r["result"]
    if kind == "verification":
        lines += ["| set | accuracy (%) | ± | pairs | threshold (squared distance) |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['accuracy'] * 100:.2f} | {v['std'] * 100:.2f} | {v['pairs']} | {v['threshold']:.2f} |"
                  for k, v in res.items()]  # fmt: skip
        lines += ["", "insightface's protocol: flip-summed normalised embeddings, 10 folds, threshold on the "
                  "squared Euclidean distance (grid 0–4, step 0.01)."]  # fmt: skip
    elif kind == "labels" and "methods" in res:
        from pltd.trainer.evaluation.labels import markdown_lines

        lines += markdown_lines(res)
    elif kind == "ijbc":
        fars = list(res["tar_at_far"])
        lines += [
            "| probes | pairs | " + " | ".join(f"TAR@FAR={f}" for f in fars) + " |",
            "|---" * (len(fars) + 2) + "|",
        ]
        rows = [("all", {"pairs": res["pairs"], "tar_at_far": res["tar_at_far"]})]
        rows += [(k, res[k]) for k in ("soft", "medium", "hard") if k in res]
        for name, v in rows:
            tars = v.get("tar_at_far") or {}
            lines.append(
                f"| {name} | {v['pairs']} | "
                + " | ".join(f"{tars.get(f, float('nan')) * 100:.2f}" for f in fars)
                + " |"
            )
        f = res.get("features", {})
        norm = "normalised per image" if f.get("per_image_normalised") else "not normalised per image"
        face = "× the detector's faceness score" if f.get("faceness_weighted") else "no faceness weighting"
        lines += ["", f"Image features: flip-summed, {norm}, {face}; media-averaged templates, normalised. "
                  "insightface's default: not normalised per image, × faceness."]  # fmt: skip
    else:
        if "pose" in res:
            p = res["pose"]
            v = [p.get(k, float("nan")) for k in ("yaw", "pitch", "roll", "mean")]
            lines += ["| yaw | pitch | roll | MAE | images (excluded by \\|angle\\| > 99°) |", "|---|---|---|---|---|"]
            lines += ["| " + " | ".join(f"{x:.2f}" for x in v) + f" | {p['n']} ({p['excluded']}) |", ""]
        if "nme" in res:
            n = res["nme"]
            cell = lambda b: f"{n[b]['nme']:.2f} ({n[b]['n']})" if n[b]["nme"] is not None else f"– ({n[b]['n']})"  # noqa: E731
            lines += ["| NME % \\|yaw\\| ≤ 30 | 30–60 | > 60 | mean of bins | mean of faces |", "|---|---|---|---|---|"]
            means = [f"{n[k]:.2f}" if n[k] is not None else "–" for k in ("mean", "all")]
            lines += [" | ".join(["", cell("0-30"), cell("30-60"), cell("60-90"), *means, ""]).strip()]
        if "failure_rate" in res:
            fr, auc = res["failure_rate"], res["auc"]
            lines += ["", "| failure rate NME > 0.08 (%) | > 0.10 (%) | AUC@0.10 |", "|---|---|---|",
                      f"| {fr['0.08'] * 100:.2f} | {fr['0.1'] * 100:.2f} | {auc['0.1']:.4f} |", "",
                      f"AUC: {res['auc_definition']}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, kind: str, model: str, data: str, result: dict) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    r = {"kind": kind, "model": str(model), "data": str(data), "date": date, "result": result}
    (out / f"{kind}.json").write_text(json.dumps(r, indent=2))
    (out / f"{kind}.md").write_text(markdown(kind, r))
    if "ced" in result:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(result["ced"]["x"], result["ced"]["y"])
        for t in (0.08, 0.10):
            ax.axvline(t, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, 0.10)
        ax.set_ylim(0, 1)
        ax.set_xlabel("NME (face size)")
        ax.set_ylabel("fraction of images")
        ax.set_title(f"{kind}: cumulative error distribution")
        fig.tight_layout()
        fig.savefig(out / f"{kind}_ced.png", dpi=100)
        plt.close(fig)
    return out / f"{kind}.md"
