#!/usr/bin/env python3
"""Trains tiny tokenizers with the Hugging Face `tokenizers` library, in each
tokenizer.json form flashgpt reads, and records the ids and decodes that
`tokenizers` and transformers' AutoTokenizer give for many strings.

Usage (a venv with tokenizers and transformers; no download happens):
    python3 tests/text/hf/gen_hf_tokenizers.py [--retrain]
Writes tests/text/hf/<name>/{tokenizer.json,tokenizer_config.json} and
tests/text/hf/cases.json. A folder that already holds a tokenizer.json is
kept (training is not fully deterministic: the library's hash maps order
equal-count merges differently from run to run) unless --retrain; the
cases are always recomputed. The training corpus is written below.

Folders (vocabularies of a few hundred tokens, so the files stay small):
  gpt2       ByteLevel pre-tokenizer with its built-in GPT-2 regex,
             <|endoftext|>, ByteLevel decoder, no post-processor additions
  llama3     Split(Llama-3 regex) + ByteLevel, ignore_merges, special tokens
             <|begin_of_text|> ..., TemplateProcessing "<|begin_of_text|> $A"
  qwen2      NFC normalizer, Split(Qwen2 regex) + ByteLevel, <|endoftext|>,
             <|im_start|>, <|im_end|>, a non-special added token with
             lstrip / rstrip
  llama2     SentencePiece-style BPE: Prepend("▁") + Replace(" ", "▁"),
             byte_fallback <0xNN> (ids 3..258), unk, fuse_unk, decoder
             Replace/ByteFallback/Fuse/Strip, TemplateProcessing "<s> $A"
  mistral    the same model with the Metaspace pre-tokenizer (prepend_scheme
             "first", split false) and Metaspace decoder
  smollm2    Digits(individual_digits) + ByteLevel with the GPT-2 regex,
             <|endoftext|>, <|im_start|>, <|im_end|> (SmolLM2's form)
  added_bl   GPT-2-style with NFC and added tokens using every flag:
             lstrip, rstrip, single_word, normalized (matched after NFC),
             overlapping contents (longest wins), one that is also a model
             token, special and not
  added_sp   the Llama-2 form with a normalized added token (its content
             goes through Prepend / Replace too) and a single_word one
Each case records: hex (the exact text bytes), ids (default: post-processor
additions, special tokens matched), ids_no_special (add_special_tokens off),
ids_split_special (special tokens read as text), decode_hex (of ids, special
tokens kept), decode_no_special_hex (of ids_no_special, where
the decoder's start-of-text rules meet a normal token); transformers'
AutoTokenizer must give the same ids and decode, or the script stops.
"""
import json
import os
import sys

import tokenizers
import transformers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))

GPT2_PAT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
    "I'm sure you'll like it; they're here, we've seen it, he'd go, she's fine, don't.",
    "def main():\n    return 42\n\nif __name__ == '__main__':\n    main()\n",
    "Numbers: 0 1 2 3 12 123 1234 12345 3.14159 2024-06-01 1,000,000 $5.99 100%",
    "Café naïve résumé façade — «quotes» “curly” ‘single’ … über straße",
    "Привет, мир! Как дела? Ελληνικά γράμματα. שלום עולם. مرحبا بالعالم",
    "中文字符测试，你好世界。日本語のテキスト、こんにちは。한국어 텍스트 안녕하세요",
    "Emoji 😀 😃 👍🏽 👨‍👩‍👧 ❤️ 🇫🇷 and symbols ★ ☆ ♥ → ← ∑ ∞ ≠ ≤",
    "Tabs\tand\ttabs, new\nlines\r\nand  double  spaces   triple    quad",
    "<html><body><p class=\"x\">Hello &amp; welcome</p></body></html>",
    "SELECT name, age FROM users WHERE age >= 18 ORDER BY name;",
]


def corpus():
    for k in range(30):
        for line in CORPUS:
            yield line if k % 2 == 0 else line.lower()


CASES = [
    "", " ", "  ", "a", "Hello world", "Hello, world!", " Hello", "hello   world",
    "Once upon a time there was a little girl.",
    "I'm", "I'M", "you'll", "YOU'LL", "they're They'Re", "'s", "x's 'S 'Ll 'LL 'lL", "don't stop",
    "'ſ", "it'ſ",
    "1", "12", "123", "1234", "12345", "123456789012", "3.14159", "a1b22c333d4444",
    "٣٤٥ ١٢", "²³ ½ Ⅻ",
    "tab\there", "\t\t", "line\nbreak", "crlf\r\nline", "\r\n", "\n\n\n", "a\n\n b",
    "trailing   ", "   leading", "a  b   c    d", " \n ", "x \n y", "x\r\n\r\n y",
    "no\u00a0break", "\u00a0\u00a0x", "ideo\u3000space", "\u3000", "em\u2003space",
    "line\u2028sep", "\x0b\x0c vt ff", "\x1c\x1d\x1e\x1f seps", "\x85nel",
    "中文字符测试", "你好，世界。", "日本語のテキスト", "한국어 텍스트",
    "😀", "👍🏽", "👨‍👩‍👧", "❤️", "🇫🇷", "a😀b", " 😀😀",
    "Café", "Cafe\u0301", "e\u0301\u0302", "\u1e0b\u0323", "d\u0323\u0307", "\u0344",
    "\ufb01 ligature", "Å Å", "\uac00\u11a8 \u1100\u1161\u11a8", "\u0958", "\u2126",
    "Привет, мир!", "Ελληνικά", "مرحبا", "שלום",
    "<html><p class=\"x\">&amp;</p></html>", "SELECT * FROM t;", "a=b+c*(d-e)/f",
    "def f(x):\n    return x**2\n", "    indented\n\tand tabbed",
    "~`!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/", "...", "!!!??", " !", "a.b", "ab.",
    "\u00ff\u0100 \u0120 \u010a", "\ufffd", "\U0010ffff", "\x7f\x01",
    "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hello <s> world </s>", " <s> ", "<s><s>",
    "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|> <|endoftext|>",
    "<|begin_of_text|>Hi<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start", "<|im_start|", "<0x41>", "<0xE4><0xB8>",
    "x <tool> y", "x<tool>y", "<tool>",
    "a <mask> b", "a  <mask>b", "<mask>", "<sep>  x", "x<sep>\ty", "a word b", "swordfish",
    "word", "words word.", "café cafe\u0301 CAFÉ", "<|a|>b <|a|>c <|a|", "the then other",
    "x foo bar y", "foo bar", "foobar", "a<x>b", "a <x> b", "<x>",
    "Once upon a time, there was a little girl named Lily. " * 3,
    "The quick brown fox jumps over the lazy dog. " * 2 + "12345678 ☃ 😀 \t\n end",
]


def trained_byte_level(pattern, nfc, specials, ignore_merges=False, vocab=700):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                     use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def trained_sentencepiece(metaspace):
    """Llama-2-style BPE: the vocabulary starts <unk> <s> </s> <0x00>..<0xFF>,
    the trained pieces follow; the alphabet is limited so that rarer
    characters need byte fallback."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=80, show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    spec = json.loads(tok.to_str())
    old = spec["model"]["vocab"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for piece, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    spec["model"]["vocab"] = vocab
    spec["added_tokens"] = [
        {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    if metaspace:
        spec["normalizer"] = None
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                                 "prepend_scheme": "first", "split": False}
        spec["decoder"] = {"type": "Metaspace", "replacement": "▁",
                           "prepend_scheme": "first", "split": False}
    else:
        spec["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


def build():
    toks = {}
    t = trained_byte_level(None, False, ["<|endoftext|>"])
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    toks["gpt2"] = (t, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})

    llama3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                       "<|end_header_id|>", "<|eot_id|>"]
    t = trained_byte_level(LLAMA3_PAT, False, llama3_specials, ignore_merges=True)
    bot = t.token_to_id("<|begin_of_text|>")
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bot)])])
    toks["llama3"] = (t, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})

    t = trained_byte_level(QWEN2_PAT, True, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    t.add_tokens([AddedToken("<tool>", special=False, normalized=False, lstrip=True,
                             rstrip=True)])
    toks["qwen2"] = (t, {"bos_token": None, "eos_token": "<|im_end|>"})

    toks["llama2"] = (trained_sentencepiece(False), {"bos_token": "<s>", "eos_token": "</s>"})
    toks["mistral"] = (trained_sentencepiece(True), {"bos_token": "<s>", "eos_token": "</s>"})

    t = trained_byte_level(None, False, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    toks["smollm2"] = (t, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})
    t = trained_byte_level(None, True, ["<|endoftext|>"])
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    t.add_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False),
                  AddedToken("<sep>", special=True, rstrip=True, normalized=False),
                  AddedToken("word", special=False, single_word=True, normalized=False),
                  AddedToken("cafe\u0301", special=False, normalized=True),
                  AddedToken("<|a|>", special=True, normalized=False),
                  AddedToken("<|a|>b", special=False, normalized=False),
                  AddedToken("the", special=False, normalized=False)])
    toks["added_bl"] = (t, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})

    t = trained_sentencepiece(False)
    t.add_tokens([AddedToken("foo bar", special=False, normalized=True),
                  AddedToken("<x>", special=False, single_word=True, normalized=False)])
    toks["added_sp"] = (t, {"bos_token": "<s>", "eos_token": "</s>"})
    return toks


def main():
    out_cases = {"tokenizers_version": tokenizers.__version__,
                 "transformers_version": transformers.__version__, "folders": {}}
    retrain = "--retrain" in sys.argv[1:]
    for name, (tok, special) in build().items():
        folder = os.path.join(HERE, name)
        os.makedirs(folder, exist_ok=True)
        if retrain or not os.path.exists(os.path.join(folder, "tokenizer.json")):
            tok.save(os.path.join(folder, "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast",
                  "clean_up_tokenization_spaces": False, "model_max_length": 4096}
        config.update(special)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        auto = transformers.AutoTokenizer.from_pretrained(folder)
        cases = []
        for text in CASES:
            ids = tok.encode(text).ids
            plain = tok.encode(text, add_special_tokens=False).ids
            tok.encode_special_tokens = True
            split = tok.encode(text).ids
            tok.encode_special_tokens = False
            decoded = tok.decode(ids, skip_special_tokens=False)
            decoded_plain = tok.decode(plain, skip_special_tokens=False)
            auto_ids = auto(text)["input_ids"]
            auto_text = auto.decode(ids, skip_special_tokens=False)
            if auto_ids != ids or auto_text != decoded:
                sys.exit("%s: transformers and tokenizers disagree on %r: %r %r / %r %r"
                         % (name, text, auto_ids, ids, auto_text, decoded))
            cases.append({"text": text, "hex": text.encode("utf-8").hex(), "ids": ids,
                          "ids_no_special": plain, "ids_split_special": split,
                          "decode_hex": decoded.encode("utf-8").hex(),
                          "decode_no_special_hex": decoded_plain.encode("utf-8").hex()})
        out_cases["folders"][name] = {"vocab_size": tok.get_vocab_size(True), "cases": cases}
    # one case per line: small, and diffs stay readable
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        f.write('{"tokenizers_version": %s, "transformers_version": %s, "folders": {\n'
                % (json.dumps(tokenizers.__version__), json.dumps(transformers.__version__)))
        folders = []
        for name, entry in out_cases["folders"].items():
            lines = [json.dumps(c, ensure_ascii=False) for c in entry["cases"]]
            folders.append('%s: {"vocab_size": %d, "cases": [\n%s\n]}'
                           % (json.dumps(name), entry["vocab_size"], ",\n".join(lines)))
        f.write(",\n".join(folders) + "\n}}\n")


if __name__ == "__main__":
    main()
