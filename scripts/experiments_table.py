"""Print a Markdown table of the experiments of scripts/experiments.sh (from `dvc exp show`)."""

import json
import subprocess

PARAMS = ("train", "render")


def changed(params: dict, base: dict) -> str:
    out = []
    for section in PARAMS:
        for key, value in params[section].items():
            if value != base[section][key]:
                out.append(f"{section}.{key}={json.dumps(value)}")
    return ", ".join(out) or "(default)"


def main() -> None:
    show = json.loads(
        subprocess.run(
            ["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    baseline = show[1]
    base = baseline["data"]["params"]["params.yaml"]["data"]
    rows = [("main", baseline["data"])] + [
        (e["name"], e["revs"][0]["data"]) for e in baseline.get("experiments") or []
    ]
    print(
        "| experiment | changed | MRL low/high e0 | SMRL low/high e0 | var MRL/SMRL e0 | "
        "smallest fall | claims 1/2/3 | nDCG@10 MRL d96 | SMRL d96 | MRL d192 | SMRL d192 |"
    )
    print("|" + "---|" * 11)
    for name, data in sorted(rows, key=lambda r: r[0] != "main"):
        g = data["metrics"]["metrics/gradstats.json"]["data"]
        r = data["metrics"]["metrics/retrieval.json"]["data"]
        p = data["params"]["params.yaml"]["data"]
        passed = "/".join("✓" if g[f"claim{i}_passed"] else "✗" for i in (1, 2, 3))
        print(
            f"| {name} | {changed(p, base)} | {g['epoch0_mrl_low_over_high']:.2f} | "
            f"{g['epoch0_smrl_low_over_high']:.2f} | {g['var_ratio_epoch0']:.2f} | "
            f"{g['min_fall']:.1f}x | {passed} | {r['mrl_d96']['ndcg_at_10']:.4f} | "
            f"{r['smrl_d96']['ndcg_at_10']:.4f} | {r['mrl_d192']['ndcg_at_10']:.4f} | "
            f"{r['smrl_d192']['ndcg_at_10']:.4f} |"
        )


if __name__ == "__main__":
    main()
