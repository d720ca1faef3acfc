#!/usr/bin/env python3
"""Rebuild Models/clip-tokenizer/{vocab.json,merges.txt,tokenizer_config.json,special_tokens_map.json}
from open_clip's bpe_simple_vocab_16e6.txt.gz, byte-identical in content to the tokenizer
folder of openai/clip-vit-large-patch14 (49408 tokens, 48894 merges).

Usage:
  pip download --no-deps open_clip_torch -d /tmp/oc
  python3 tools/make_clip_vocab.py [path/to/open_clip_torch-*.whl | path/to/bpe_simple_vocab_16e6.txt.gz]
Not run by CI.
"""
import gzip, io, json, os, sys, zipfile, glob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Models", "clip-tokenizer")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def load_bpe_text(src):
    if src.endswith(".whl"):
        with zipfile.ZipFile(src) as z:
            return gzip.decompress(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    with gzip.open(src, "rb") as f:
        return f.read().decode("utf-8")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else (sorted(glob.glob("/tmp/oc/open_clip_torch-*.whl")) or ["/tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz"])[-1]
    lines = load_bpe_text(src).split("\n")
    # Same slice as openai/CLIP simple_tokenizer.py: skip the "#version" line, keep 49152-256-2 merges.
    merges = lines[1 : 49152 - 256 - 2 + 1]
    assert len(merges) == 48894, len(merges)
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    with open(os.path.join(OUT, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    # Same contents as the hub folder's files (key order as there; AddedToken dicts).
    special = lambda s: {"content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True}
    added = lambda s: dict(special(s), __type="AddedToken")
    config = {
        "unk_token": added("<|endoftext|>"),
        "bos_token": added("<|startoftext|>"),
        "eos_token": added("<|endoftext|>"),
        "pad_token": "<|endoftext|>",
        "add_prefix_space": False,
        "errors": "replace",
        "do_lower_case": True,
        "name_or_path": "openai/clip-vit-large-patch14",
        "model_max_length": 77,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
    }
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    stm = {
        "bos_token": special("<|startoftext|>"),
        "eos_token": special("<|endoftext|>"),
        "unk_token": special("<|endoftext|>"),
        "pad_token": "<|endoftext|>",
    }
    with open(os.path.join(OUT, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(stm, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT}: {len(vocab)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
