#!/usr/bin/env python3
"""Draws the README's grid with LeanDiffusion itself: each prompt below through `lean-diffusion generate` on the
default model (Models/tiny-sd), PNGs to docs/default-model/, and prints the Markdown table for the README. The
last row's prompts are held out of training (tools/shapes_dataset.py).

    swift build -c release --product lean-diffusion
    python3 tools/make_readme_grid.py [--binary .build/release/lean-diffusion]
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_dataset as shapes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = [
    "a red circle on a blue background",
    "two green triangles on a white background, top left",
    "a yellow star on a black background",
    "three blue squares on a yellow background, bottom right",
    "a white diamond on a red background, top right",
    "two black circles on a green background, bottom left",
    "a blue triangle on a white background, center",
    "three red stars on a yellow background",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(REPO, ".build", "release", "lean-diffusion"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "default-model"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cells = []
    # the last row: combinations the model never saw in training (the first of the test's held-out prompts)
    held_out = [p["prompt"] for p in shapes.held_out_prompts(40)[:4]]
    for i, prompt in enumerate(PROMPTS + held_out):
        path = os.path.join(args.out, f"{i:02d}.png")
        subprocess.run([args.binary, "generate", "--prompt", prompt, "--seed", str(args.seed), "--quiet",
                        "--output", path], check=True)
        cells.append((os.path.relpath(path, REPO), prompt + (" (held out)" if prompt in held_out else "")))
    cols = 4
    print("| " + " | ".join(f'<img src="{p}" width="128">' for p, _ in cells[:cols]) + " |")
    print("|" + "---|" * cols)
    rows = [cells[i:i + cols] for i in range(0, len(cells), cols)]
    for r, row in enumerate(rows):
        if r > 0:
            print("| " + " | ".join(f'<img src="{p}" width="128">' for p, _ in row) + " |")
        print("| " + " | ".join(f"*{t}*" for _, t in row) + " |")


if __name__ == "__main__":
    main()
