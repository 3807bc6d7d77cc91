"""Render benchmarks/paper001_results.json as the paper's tables (Markdown), for benchmarks/README.md.

python benchmarks/paper001_tables.py [results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def sfd(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['success_rate']:.1f} (F={d['failed_rate']:.1f}, D={d['detected_rate']:.1f})"


def render(results: dict) -> str:
    out = [
        "**Table 1** (test accuracy, %)",
        "",
        "| setup | W-LC | W~-LC | W~-SVDD(O_c) | W~-SVDD(O_d) | O_d / O_c |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        t = r["table1"]
        out.append(
            f"| {name} | {100 * t['W-LC']:.2f} | {100 * t['W~-LC']:.2f} | {100 * t['W~-SVDD(beta=O_c)']:.2f} "
            f"| {100 * t['W~-SVDD(beta=O_d)']:.2f} | {r['beta']['O_d_scale']:.2f} |"
        )
    for name, r in results.items():
        out += [
            "",
            f"**{name}** ({r['n_attacked']} correctly classified test images; MSE x 10^3; "
            "SSIM x 100; ASR and S/F/D in % of the attacked images correct on the judged model)",
            "",
            "| attack | SSIM | MSE | ASR on W | eq. 6 check | SSIM (W~-LC) "
            "| MSE (W~-LC) "
            "| ASR on W~-LC "
            "| transfer to SVDD O_c: S (F, D) | transfer to SVDD O_d: S (F, D) | adaptive on SVDD O_c: S (F, D) "
            "| adaptive MSE |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a, row in r["attacks"].items():
            u, d, ad = row["undefended"], row["defended"], row["adaptive"]
            verdict = "pass" if u["pmf_passed"] else "fail"
            maxp = u["pmf_check"].split("= ")[1].split(" ")[0]
            cells = [
                a,
                f"{u['sim']:.2f}",
                f"{1e3 * u['mse']:.2f}",
                f"{u['asr']:.1f}",
                f"{verdict} (max p {maxp})",
                f"{d['sim']:.2f}",
                f"{1e3 * d['mse']:.2f}",
                f"{d['asr_lc']:.1f}",
                sfd(d["O_c"]),
                sfd(d["O_d"]),
                sfd(ad),
                f"{1e3 * ad['mse']:.2f}" if ad else "-",
            ]
            out.append("| " + " | ".join(cells) + " |")
        if r["missing"]:
            out += ["", "Not run: " + "; ".join(f"{k}: {v}" for k, v in r["missing"].items())]
    return "\n".join(out)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("paper001_results.json")
    print(render(json.loads(path.read_text())))
