#!/usr/bin/env python3
"""Prints the criterion medians of `cargo bench --bench handoff` as a
markdown table, with offload_task's ratio to each peer (for BENCHMARKS.md).

    cargo bench --bench handoff && python3 benches/handoff_medians.py

Reads target/criterion/<group>/<peer>/new/estimates.json (the last run).
"""

import json
import pathlib
import re
import sys

PEERS = [
    "offload_task",
    "offload_oneshot",
    "rayon_oneshot",
    "tokio_spawn_blocking",
    "blocking_unblock",
]
BURST = 100_000  # jobs per burst, as in benches/handoff.rs


def group_order(name):
    if name.startswith("round_trip"):
        return (0, name)
    match = re.fullmatch(r"burst(?:_from_(\d+)_threads)?", name)
    return (1, int(match.group(1) or 1) if match else 99, name)


def main():
    root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
    groups = sorted(
        (d.name for d in root.iterdir() if (d / PEERS[0]).is_dir()), key=group_order
    )
    if not groups:
        sys.exit(f"no criterion results under {root}: run cargo bench --bench handoff")
    header = ["group (median)"] + PEERS[:1] + [f"{p} (offload ÷ it)" for p in PEERS[1:]]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for group in groups:
        medians = {}
        for peer in PEERS:
            path = root / group / peer / "new" / "estimates.json"
            if path.exists():
                medians[peer] = json.loads(path.read_text())["median"]["point_estimate"]
        burst = group.startswith("burst")

        def show(ns):
            if burst:  # time per burst, and per job
                return f"{ns / 1e6:.1f} ms ({ns / BURST:.0f} ns/job)"
            return f"{ns / 1e3:.2f} µs"

        offload = medians.get(PEERS[0])
        cells = [group, show(offload) if offload else "-"]
        for peer in PEERS[1:]:
            if peer in medians and offload:
                cells.append(f"{show(medians[peer])} ({offload / medians[peer]:.2f}×)")
            else:
                cells.append("-")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
