#!/usr/bin/env python3
"""Writes host/text/unicode_nfc.h: the tables Unicode Normalization Form C
needs (tokenizer.json's "NFC" normalizer), from the Unicode database bundled
with this Python.

Usage: python3 scripts/gen_unicode_nfc.py > host/text/unicode_nfc.h
       python3 scripts/gen_unicode_nfc.py --vectors > tests/text/nfc_cases.json
The second form writes test vectors: the NFD form of every primary
composite, of every Hangul syllable of a sample, and seeded random strings
of starters, combining marks and conjoining jamo (some with long runs of
marks), each with its NFC by
unicodedata.normalize, as "hex:hex" of their UTF-8.

Tables (Hangul syllables are left out of all three: they decompose and
compose by arithmetic, UAX #15 section 3.12):
  ccc:       canonical combining class of every code point whose class is
             not 0, as ranges {first, last, class}
  decompose: each code point's canonical decomposition, one level deep
             {cp, first, second} (second 0 for a singleton); applying it
             recursively gives the full canonical decomposition
  compose:   the primary composites {first, second, composite}, sorted by
             (first, second): pairs whose canonical composition gives the
             composite back, which leaves out the composition exclusions,
             singletons and non-starter decompositions
"""
import json
import random
import sys
import unicodedata

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def canonical(cp):
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def main():
    ccc_ranges = []
    for cp in range(0x110000):
        c = unicodedata.combining(chr(cp))
        if c == 0:
            continue
        if ccc_ranges and ccc_ranges[-1][1] == cp - 1 and ccc_ranges[-1][2] == c:
            ccc_ranges[-1][1] = cp
        else:
            ccc_ranges.append([cp, cp, c])
    decomp, compose = [], []
    for cp in range(0x110000):
        if HANGUL_FIRST <= cp <= HANGUL_LAST:
            continue
        d = canonical(cp)
        if d is None:
            continue
        decomp.append((cp, d[0], d[1] if len(d) > 1 else 0))
        if len(d) == 2 and unicodedata.normalize("NFC", chr(d[0]) + chr(d[1])) == chr(cp):
            compose.append((d[0], d[1], cp))
    compose.sort()
    # host/text/unicode.c sizes its buffers on these bounds: canonical
    # decomposition gives at most 1.5 code points and 3 bytes of UTF-8 per
    # source byte, and NFC never more bytes than that.
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        n = len(c.encode("utf-8"))
        d = unicodedata.normalize("NFD", c)
        assert 2 * len(d) <= 3 * n and len(d.encode("utf-8")) <= 3 * n, hex(cp)
        assert len(unicodedata.normalize("NFC", c).encode("utf-8")) <= 3 * n, hex(cp)
    out = sys.stdout
    out.write("/* GENERATED FILE, do not edit: python3 scripts/gen_unicode_nfc.py"
              " > host/text/unicode_nfc.h\n")
    out.write(" * (Unicode %s, from Python %d.%d's unicodedata).\n"
              % (unicodedata.unidata_version, *sys.version_info[:2]))
    out.write(" *\n * NFC tables, Hangul excluded (arithmetic): canonical combining classes\n"
              " * {first, last, class}, one-level canonical decompositions {cp, first,\n"
              " * second or 0}, primary composites {first, second, composite} sorted by\n"
              " * pair. Read-only constants, included by host/text/unicode.c only. */\n")
    out.write("#ifndef FLASHGPT_HOST_UNICODE_NFC_H\n#define FLASHGPT_HOST_UNICODE_NFC_H\n\n")
    out.write("#include <stdint.h>\n\n")
    for name, rows in (("fgi_nfc_ccc", ccc_ranges), ("fgi_nfc_decompose", decomp),
                       ("fgi_nfc_compose", compose)):
        out.write("static const uint32_t %s[][3] = {\n" % name)
        line = []
        for r in rows:
            line.append("{0x%X, 0x%X, 0x%X}," % tuple(r))
            if len(line) == 3:
                out.write("    " + " ".join(line) + "\n")
                line = []
        if line:
            out.write("    " + " ".join(line) + "\n")
        out.write("};\n\n")
    out.write("#endif /* FLASHGPT_HOST_UNICODE_NFC_H */\n")


def vectors():
    texts = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or HANGUL_FIRST <= cp <= HANGUL_LAST:
            continue
        c = chr(cp)
        d = unicodedata.normalize("NFD", c)
        if d != c and unicodedata.normalize("NFC", d) == c:
            texts.append(d)
    texts += [unicodedata.normalize("NFD", chr(cp)) for cp in range(0xAC00, 0xD7A4, 97)]
    pool = ("a e o u A E O c n s y z \u03b1 \u03c9 \u0438 \u0915 \u0627 \u1100 \u1161 \u11a8 "
            "\uac00 \u0300 \u0301 \u0302 \u0303 \u0308 \u030a \u0323 \u0327 \u0328 \u0345 "
            "\u0313 \u0314 \u093c \u0654 \u05b0 \u0f71 \u0f72 \u1dce \u0344 \u0958 \u212b "
            "\u2126 \u00c5 \u1e0b \u0d4a \u0d3e \u0d46 \U0001d15e \U0001d165 \u3099 \u304b x")
    pool = pool.split()
    rng = random.Random(14)
    for _ in range(400):
        texts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
    # long runs of marks (the C code sorts runs of 32 and more differently)
    marks = [p for p in pool if len(p) == 1 and unicodedata.combining(p)]
    for _ in range(20):
        texts.append(rng.choice("aeoA\u03b1") +
                     "".join(rng.choice(marks) for _ in range(rng.randint(30, 120))))
    cases = ["%s:%s" % (t.encode().hex(), unicodedata.normalize("NFC", t).encode().hex())
             for t in texts]
    sys.stdout.write('{"unicode": "%s", "cases": [\n' % unicodedata.unidata_version)
    sys.stdout.write(",\n".join(json.dumps(c) for c in cases) + "\n]}\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--vectors"]:
        vectors()
    else:
        main()
