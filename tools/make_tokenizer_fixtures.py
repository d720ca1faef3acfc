#!/usr/bin/env python3
"""Write Tests/LeanDiffusionTests/Fixtures/tokenizer/{prompts.json,expected_ids.json}.

The reference is transformers' *slow* CLIPTokenizer (transformers 4.x, tokenization_clip.py)
without ftfy, i.e. the BasicTokenizer text cleaning. transformers 5 dropped the slow class
(its CLIPTokenizer is the tokenizers-backed one), so run this in an environment with
transformers<5 and without ftfy, e.g.:

  python3 -m venv --system-site-packages /tmp/tf4
  /tmp/tf4/bin/pip install "transformers<5" "huggingface_hub<1.0" "tokenizers<0.23"
  /tmp/tf4/bin/python tools/make_tokenizer_fixtures.py

The prompt list is generated deterministically (seeded). The fast tokenizer's ids are
compared too and the differences only reported (they are not the reference). Not run by CI.
"""
import json, os, random, sys, unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_DIR = os.path.join(ROOT, "Models", "clip-tokenizer")
OUT_DIR = os.path.join(ROOT, "Tests", "LeanDiffusionTests", "Fixtures", "tokenizer")
MAX_LEN = 77

SUBJECTS = """astronaut cat dog horse dragon castle robot samurai wizard girl boy old man woman knight
fox owl whale city street forest mountain lake river ocean spaceship car motorcycle bicycle train
temple cathedral lighthouse village garden desert volcano waterfall cyborg mermaid unicorn phoenix
tiger lion wolf bear rabbit butterfly jellyfish octopus skyscraper bridge library cafe kitchen""".split()
ADJ = """beautiful detailed intricate epic cinematic moody vibrant colorful dark bright ethereal
surreal futuristic ancient ruined cozy majestic tiny giant glowing neon rainy foggy snowy sunny
golden misty abandoned mysterious serene dramatic whimsical gothic minimalist ornate""".split()
STYLE = """oil painting|watercolor|digital art|concept art|photograph|35mm film|studio ghibli style|
pixel art|3d render|octane render|unreal engine|trending on artstation|by greg rutkowski|
by alphonse mucha|in the style of van gogh|ukiyo-e|low poly|isometric|anime|comic book|
charcoal sketch|pencil drawing|matte painting|hdr|8k|4k uhd|highly detailed|sharp focus|
bokeh|volumetric lighting|golden hour|soft light|rim lighting|award winning""".replace("\n", "").split("|")
VERBS = "riding|sitting on|standing next to|flying over|walking through|eating|reading|holding|looking at|dancing in".split("|")
PLACES = "on mars|in paris|under the sea|in a forest|at night|in the rain|on the moon|in tokyo|in a dream|at sunset".split("|")

ACCENTED_WORDS = ["café", "naïve", "résumé", "crème brûlée", "piñata", "jalapeño", "façade", "Zürich",
                  "Ångström", "Øresund", "São Paulo", "Kraków", "Dvořák", "Ærø", "Ελλάδα", "Ῥόδος",
                  "Việt Nam", "Nguyễn", "fiancée", "Ça va", "Über", "groß", "Ελληνικά", "Μύκονος"]
UNICODE_WORDS = ["Москва", "Привет мир", "Ελληνικά", "ΟΔΟΣ", "ΣΑΣ ΛΕΞΗ", "İstanbul", "ıslak", "straße",
                 "STRASSE ẞ", "שלום", "مرحبا بالعالم", "नमस्ते दुनिया", "हिन्दी", "สวัสดีครับ", "안녕하세요",
                 "ひらがな カタカナ", "東京タワー", "日本語のテキスト", "中文提示词", "漢字と仮名", "繁體中文",
                 "𠀀𠀁 ext-b", "豈 更 車 (compat ideographs)", "ǅemal ǈ ǋ", "ﬁne ﬂower ﬀ", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
                 "Ⅻ Ⅳ ⅻ", "①②③", "x² y³ ½ ¾", "٣٤٥ ۱۲", "१२३", "𝔣𝔯𝔞𝔨𝔱𝔲𝔯 𝐛𝐨𝐥𝐝", "Ωmega Ω", "K Kelvin",
                 "ᾳ ᾼ α\u0345", "it'ſ <|ſtartoftext|>", "Ǆ ǅ ǆ", "ꙮ", "ᏣᎳᎩ", "ⓐⓑⓒ Ⓐ", "Ⅷ-ⅷ", "µ μ", "ŉ ǰ ΐ"]
EMOJI = ["🙂", "👍🏽", "🐱", "🚀", "🌕", "❤️", "🔥🔥🔥", "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "🇯🇵🇫🇷",
         "1️⃣", "✨", "☕", "🎨🖌️", "😂😂", "🧙\u200d♂️", "🦄", "⭐️", "🌸", "💯"]
PUNCT = ["(masterpiece:1.2)", "((best quality))", "[cat|dog]", "{red, blue}", "--ar 16:9", "--v 5.2",
         "don't", "it's", "I'M", "you're", "we've", "they'll", "he'd", "y'all", "rock'n'roll", "'s'",
         "O'Neil's", "''quoted''", "\"double quotes\"", "“curly” ‘quotes’", "e-mail", "state-of-the-art",
         "and/or", "https://example.com/a?b=c&d=e", "user@example.com", "#hashtag", "@mention", "50%",
         "$19.99", "€5", "£3", "¥100", "a+b=c", "x*y", "~tilde~", "under_score", "back\\slash",
         "semi;colon", "colon: yes", "ellipsis...", "wait…", "em—dash", "en–dash", "!!!", "???", "?!",
         "¡hola!", "¿qué?", "«guillemets»", "<angle>", "<|notspecial|>", "|pipe|", "^caret^", "`backtick`",
         "a.b.c", "1,000,000", "3.14159", "-42", "+7", "1920x1080", "8k", "4K", "2024-01-01", "12:30pm",
         "no.1", "#1", "v1.5", "sd-2.1", "…", "·", "•bullet", "§1", "©2023", "™", "°C", "±5", "→ ← ↑"]
SPECIAL = ["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|EndOfText|>", "a<|endoftext|>b",
           "!<|endoftext|>", "!!<|endoftext|>!!", "<|endoftext|><|endoftext|>", "<|startoftext|> hi <|endoftext|>",
           "<|endoftext", "endoftext|>", "<|end of text|>", "x<|startoftext|>y", "<|startoftext|>!",
           "'s<|endoftext|>'t", "<|endoftext|>\t<|endoftext|>", " <|endoftext|> ", "!<|ENDOFTEXT|>x"]
WHITESPACE = ["", " ", "   ", "\t", "\n", "\r\n", " \t \n ", "\u00a0", "\u3000", "\u2003\u2002",
              "a\tb", "a\nb", "a\r\nb", "  leading", "trailing  ", "a  b   c", "line one\nline two\n\nline three",
              "tab\tseparated\tvalues", "nbsp\u00a0between", "ideographic\u3000space", "a\u2028b\u2029c",
              "a\u000bb\u000cc", "a\u0085b", "a\u1680b"]
CONTROL = ["a\x00b", "bell\x07", "\x1b[31mred\x1b[0m", "zero\u200bwidth", "\ufeffbom", "re\ufffdplaced",
           "soft\u00adhyphen", "private\ue000use", "rtl\u200fmark", "a\u2060b", "del\x7fete", "\x01\x02\x03",
           "c1\x80\x9fend", "joiner\u200dword", "non\u200cjoiner", "variation\ufe0fselector"]

POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
        + list(" \t\n.,;:!?'\"()[]{}<>|/\\-_+=*&^%$#@~`") * 2
        + list("éèêëàâäôöûüçñÉÀÇÑøåæœßÆŒ") + ["e\u0301", "a\u0308", "o\u0302", "n\u0303", "q\u0301", "\u0301", "\u0323\u0302"]
        + list("αβγδΣσςΩωЖжЯяשאبتदकกขㄱㅏ한글ひカ漢字中文") + ["\u1100\u1161\u11a8", "\u1112\u1161\u11ab"]
        + list("①Ⅻ½²٣１ａ") + ["🙂", "🔥", "👍🏽", "❤️", "\u200d", "\u200b", "\x00", "\ufffd", "\u00a0", "\u3000", "ſ", "\u0345", "İ"]
        + ["<|endoftext|>", "<|startoftext|>", "'s", "'ll", "'re"])


def nfd(s):
    return unicodedata.normalize("NFD", s)


def make_prompts():
    rng = random.Random(20240607)
    prompts = []
    add = prompts.append
    # Fixed categories.
    add("a photo of an astronaut riding a horse on mars")
    for group in (PUNCT, SPECIAL, WHITESPACE, CONTROL, EMOJI, UNICODE_WORDS, ACCENTED_WORDS):
        for s in group:
            add(s)
    # Accents, precomposed and decomposed (NFD), alone and in prompts.
    for w in ACCENTED_WORDS:
        add(nfd(w))
        add(f"a {w} in {nfd(w)}")
        add(w.upper())
        add(nfd(w.upper()))
    for w in UNICODE_WORDS:
        add(nfd(w))
    # Hangul as conjoining jamo (NFC recomposes them), combining-mark orderings.
    add("\u1100\u1161\u11a8\u1102\u1161 \u1112\u1161\u11ab\u1100\u1173\u11af")
    add("a\u0323\u0302 vs a\u0302\u0323 vs \u1ead")
    add("q\u0301 x\u0308\u0301 e\u0301\u0301")
    # Plain English SD prompts.
    def sd_prompt():
        parts = [f"a {rng.choice(ADJ)} {rng.choice(SUBJECTS)}"]
        if rng.random() < 0.6:
            parts[0] += f" {rng.choice(VERBS)} a {rng.choice(SUBJECTS)} {rng.choice(PLACES)}"
        for _ in range(rng.randint(0, 6)):
            parts.append(rng.choice(STYLE))
        sep = rng.choice([", ", ", ", ",", " ", " | ", ". "])
        p = sep.join(parts)
        r = rng.random()
        if r < 0.15:
            p = p.capitalize()
        elif r < 0.2:
            p = p.upper()
        elif r < 0.3:
            p = p.title()
        return p
    for _ in range(420):
        add(sd_prompt())
    # Mixed: SD prompts with punctuation / numbers / unicode / emoji inserted.
    for _ in range(220):
        words = sd_prompt().split(" ")
        for _ in range(rng.randint(1, 4)):
            extra = rng.choice([rng.choice(PUNCT), rng.choice(EMOJI), rng.choice(ACCENTED_WORDS),
                                nfd(rng.choice(ACCENTED_WORDS)), rng.choice(UNICODE_WORDS),
                                str(rng.randint(0, 100000)), f"{rng.random() * 10:.3f}", rng.choice(SPECIAL[:3])])
            words.insert(rng.randint(0, len(words)), extra)
        joiner = rng.choice([" ", " ", "  ", "\t", "\n", ""])
        add(joiner.join(words))
    # Long prompts (> 77 tokens).
    for _ in range(60):
        add(", ".join(sd_prompt() for _ in range(rng.randint(4, 14))))
    add(" ".join(["word"] * 200))
    add("!" * 300)
    add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(400)))
    add("超" * 100)
    add("🔥" * 100)
    # Random character soup.
    for _ in range(260):
        add("".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))))
    # Exclamation-heavy prompts (matter for SD2's pad token "!").
    for _ in range(30):
        add(sd_prompt().replace(" ", rng.choice(["!", "! ", " !", "!!", " ! "]), rng.randint(1, 3)) + "!" * rng.randint(0, 3))
    # Dedupe, keep order.
    seen, unique = set(), []
    for p in prompts:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def main():
    import transformers
    from transformers import CLIPTokenizer
    try:
        from transformers import PreTrainedTokenizer
    except ImportError:
        PreTrainedTokenizer = None
    if PreTrainedTokenizer is None or not issubclass(CLIPTokenizer, PreTrainedTokenizer) or "Fast" in CLIPTokenizer.__name__:
        sys.exit(f"transformers {transformers.__version__} has no slow CLIPTokenizer; use transformers<5 (see docstring)")
    try:
        import ftfy  # noqa: F401
        sys.exit("ftfy is installed; the reference is the BasicTokenizer path (uninstall ftfy)")
    except ImportError:
        pass

    prompts = make_prompts()
    assert len(prompts) >= 1000, len(prompts)
    slow = CLIPTokenizer.from_pretrained(VOCAB_DIR)
    assert slow.fix_text is None
    slow_sd2 = CLIPTokenizer.from_pretrained(VOCAB_DIR, pad_token="!")
    enc = lambda tok, p: tok(p, truncation=True, max_length=MAX_LEN).input_ids
    ids = [enc(slow, p) for p in prompts]
    assert ids[0] == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]
    sd2 = {}
    for i, p in enumerate(prompts):
        other = enc(slow_sd2, p)
        if other != ids[i]:
            sd2[str(i)] = other
    padded = slow_sd2(prompts[0], padding="max_length", truncation=True, max_length=MAX_LEN).input_ids
    assert padded[12:] == [0] * 65, padded

    fast_diff = []
    try:
        from transformers import CLIPTokenizerFast
        fast = CLIPTokenizerFast.from_pretrained(VOCAB_DIR)
        fast_diff = [i for i, p in enumerate(prompts) if enc(fast, p) != ids[i]]
    except Exception as e:  # noqa: BLE001
        print("fast tokenizer not compared:", e)

    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "prompts.json"), "w", encoding="utf-8") as f:
        json.dump(prompts, f, ensure_ascii=True, indent=0)
        f.write("\n")
    meta = {
        "reference": f"transformers {transformers.__version__} slow CLIPTokenizer (no ftfy), "
                     f"Python {sys.version.split()[0]} (unicodedata {unicodedata.unidata_version})",
        "call": "tokenizer(prompt, truncation=True, max_length=77).input_ids",
        "sd2_note": "sd2: ids with pad_token='!' where they differ from ids (the pad token is split off like a special token)",
        "fast_tokenizer_differs_on": len(fast_diff),
        "ids": ids,
        "sd2": sd2,
    }
    with open(os.path.join(OUT_DIR, "expected_ids.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(meta, separators=(",", ":")))
        f.write("\n")
    print(f"{len(prompts)} prompts, {len(sd2)} differ with pad '!', fast differs on {len(fast_diff)}")
    for i in fast_diff[:400]:
        print("  fast!=slow", i, repr(prompts[i])[:80])


if __name__ == "__main__":
    main()
