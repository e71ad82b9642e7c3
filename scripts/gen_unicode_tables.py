#!/usr/bin/env python3
"""Writes host/text/unicode_tables.h: the code point classes the GPT-2
pre-tokeniser needs (\\p{L}, \\p{N} and \\s of its pattern), as sorted
inclusive ranges, from the Unicode database bundled with this Python.

Usage: python3 scripts/gen_unicode_tables.py > host/text/unicode_tables.h

Classes:
  letter:     general category L* (Lu Ll Lt Lm Lo)
  number:     general category N* (Nd Nl No)
  whitespace: the White_Space property, which is what the `regex` module
              (used by OpenAI's GPT-2 encoder) and tiktoken take \\s to mean.
              unicodedata does not expose it; str.isspace() is White_Space
              plus the four information separators U+001C..U+001F, so those
              are removed.
"""
import sys
import unicodedata


def ranges(pred):
    out, start = [], None
    for cp in range(0x110000 + 1):
        inside = cp <= 0x10FFFF and pred(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def is_letter(cp):
    return unicodedata.category(chr(cp)).startswith("L")


def is_number(cp):
    return unicodedata.category(chr(cp)).startswith("N")


def is_whitespace(cp):
    return chr(cp).isspace() and not 0x1C <= cp <= 0x1F


def emit(name, table):
    lines = ["static const uint32_t %s[][2] = {" % name]
    row = []
    for first, last in table:
        row.append("{0x%X, 0x%X}," % (first, last))
        if len(row) == 4:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("};")
    return "\n".join(lines)


def main():
    tables = [("fgi_unicode_letter", ranges(is_letter)),
              ("fgi_unicode_number", ranges(is_number)),
              ("fgi_unicode_whitespace", ranges(is_whitespace))]
    out = sys.stdout
    out.write("/* GENERATED FILE, do not edit: python3 scripts/gen_unicode_tables.py"
              " > host/text/unicode_tables.h\n")
    out.write(" * (Unicode %s, from Python %d.%d's unicodedata).\n"
              % (unicodedata.unidata_version, *sys.version_info[:2]))
    out.write(" *\n * Sorted, disjoint, inclusive code point ranges of the classes the GPT-2\n"
              " * pre-tokeniser uses: letter = general category L*, number = N*,\n"
              " * whitespace = the White_Space property. Read-only constants, included\n"
              " * by host/text/unicode.c only. */\n")
    out.write("#ifndef FLASHGPT_HOST_UNICODE_TABLES_H\n#define FLASHGPT_HOST_UNICODE_TABLES_H\n\n")
    out.write("#include <stdint.h>\n\n")
    out.write("#define FGI_UNICODE_VERSION \"%s\"\n\n" % unicodedata.unidata_version)
    for name, table in tables:
        out.write(emit(name, table) + "\n\n")
    out.write("#endif /* FLASHGPT_HOST_UNICODE_TABLES_H */\n")


if __name__ == "__main__":
    main()
