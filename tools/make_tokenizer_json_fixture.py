#!/usr/bin/env python3
"""A tokenizer folder as transformers 5's `save_pretrained` writes it (tokenizer.json + tokenizer_config.json, no
vocab.json / merges.txt), and the ids transformers 5 gives with it for every prompt of prompts.json.
Writes Tests/LeanDiffusionTests/Fixtures/tokenizer/json-only/{tokenizer_config.json,added_tokens.json,expected_ids.json};
the 3.6 MB tokenizer.json itself is not committed: the test rebuilds it from Models/clip-tokenizer's vocab and merges
(what save_pretrained copies into it) with added_tokens.json, and this script checks that the rebuilt parts equal
the saved file's.
Run: python3 tools/make_tokenizer_json_fixture.py
"""
import json, os, tempfile
from transformers import CLIPTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "Models/clip-tokenizer")
OUT = os.path.join(REPO, "Tests/LeanDiffusionTests/Fixtures/tokenizer/json-only")
os.makedirs(OUT, exist_ok=True)
tmp = tempfile.mkdtemp()
CLIPTokenizer.from_pretrained(SRC).save_pretrained(tmp)
assert sorted(os.listdir(tmp)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(tmp)
saved = json.load(open(os.path.join(tmp, "tokenizer.json")))
vocab = json.load(open(os.path.join(SRC, "vocab.json")))
merges = [l for l in open(os.path.join(SRC, "merges.txt"), encoding="utf-8").read().split("\n") if l and not l.startswith("#version")]
assert saved["model"]["vocab"] == vocab
assert [" ".join(m) if isinstance(m, list) else m for m in saved["model"]["merges"]] == merges
json.dump(saved["added_tokens"], open(os.path.join(OUT, "added_tokens.json"), "w"), indent=1)
open(os.path.join(OUT, "tokenizer_config.json"), "w").write(open(os.path.join(tmp, "tokenizer_config.json")).read())
tok = CLIPTokenizer.from_pretrained(tmp)
prompts = json.load(open(os.path.join(REPO, "Tests/LeanDiffusionTests/Fixtures/tokenizer/prompts.json")))
ids = [tok(p, truncation=True, max_length=77).input_ids for p in prompts]
json.dump({"ids": ids, "merges_as": type(saved["model"]["merges"][0]).__name__}, open(os.path.join(OUT, "expected_ids.json"), "w"))
print("wrote", OUT, len(ids), "prompts")
