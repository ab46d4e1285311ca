#!/usr/bin/env python3
"""Writes engine/unicode_tables.inc: sorted code point ranges for the tokenizer's pre-tokenizer
regexes (\\p{L}, \\p{N}, \\s) and the data of its NFC normaliser, from Python's unicodedata.

    python3 engine/unicode_tables.py > engine/unicode_tables.inc
    python3 engine/unicode_tables.py --check-hf    # with PyPI's `tokenizers`: re-derive the Unicode 9.0 mask

\\s follows Oniguruma (what HF tokenizers uses), whose \\s is Unicode's White_Space property.
unicodedata has no White_Space, so that list (stable since Unicode 6.x) is spelled out here.

NFC: HF tokenizers normalises with the crate unicode-normalization-alignments, whose tables are
Unicode 9.0.0, while this Python's unicodedata is newer. Canonical decompositions, combining classes
and composition exclusions never change once a character is assigned (Unicode's stability policy), so
Unicode 9.0's data is this Python's minus what characters assigned after 9.0 bring. Those characters
(unicodedata has no Age property) are listed below: every one with normalisation data, i.e. a non-zero
combining class or a canonical decomposition. `--check-hf` finds them again by asking `tokenizers`
about every character; the list must be extended when unicodedata moves past 14.0.
Tables:
  kCombiningClassRanges      {first, last, ccc}: runs of equal non-zero canonical combining class
  kCanonicalDecompositions   {cp, first, second}: single-step canonical decomposition (second 0 for a
                             singleton), sorted; decompose recursively. Hangul syllables are not here
                             (algorithmic).
  kCompositionExclusions     the two-character decompositions that NFC does not recompose (explicit
                             exclusions and non-starter decompositions), sorted
  kNfcQuickCheckRanges       {first, last, value}: NFC_Quick_Check 1 Maybe, 2 No (Yes elsewhere),
                             derived from the tables above (Hangul V and T jamo are Maybe)
"""
import argparse
import sys
import unicodedata

WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
               (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]

# Characters assigned in Unicode 10.0-14.0 that have normalisation data (all but U+11938 a non-zero
# combining class; U+11938 DIVES AKURU VOWEL SIGN O = U+11935 U+11930). HF's Unicode 9.0 tables know
# nothing of them: combining class 0, no decomposition, no composition.
AFTER_UNICODE_9 = [
    (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8D3), (0x9FE, 0x9FE), (0xC3C, 0xC3C), (0xD3B, 0xD3C),
    (0xEBA, 0xEBA), (0x1715, 0x1715), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFA), (0xA82C, 0xA82C),
    (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070),
    (0x1133B, 0x1133B), (0x1145E, 0x1145E), (0x11839, 0x1183A), (0x11938, 0x11938), (0x1193D, 0x1193E),
    (0x11943, 0x11943), (0x119E0, 0x119E0), (0x11A34, 0x11A34), (0x11A47, 0x11A47), (0x11A99, 0x11A99),
    (0x11D42, 0x11D42), (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x16FF0, 0x16FF1), (0x1E130, 0x1E136),
    (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF),
]
MASK_VERSION = "14.0.0"  # the unicodedata version AFTER_UNICODE_9 was checked against

HANGUL_V = (0x1161, 0x1175)
HANGUL_T = (0x11A8, 0x11C2)  # T jamo that compose (TBase + 1 ...)


def ranges(pred):
    out, start = [], None
    for cp in range(0x110000):
        if pred(cp):
            if start is None:
                start = cp
        elif start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def valued_ranges(value):
    """Runs of equal non-zero value(cp) as (first, last, value)."""
    out = []
    for cp in range(0x110000):
        v = value(cp)
        if not v:
            continue
        if out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1][1] = cp
        else:
            out.append([cp, cp, v])
    return [tuple(r) for r in out]


def emit(name, rs, per_line=6):
    lines = [f"constexpr CodepointRange {name}[] = {{"]
    row = []
    for a, b in rs:
        row.append(f"{{0x{a:X}, 0x{b:X}}}")
        if len(row) == per_line:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    return "\n".join(lines)


def emit_rows(ctype, name, rows, per_line, fmt):
    lines = [f"constexpr {ctype} {name}[] = {{"]
    for k in range(0, len(rows), per_line):
        lines.append("    " + ",".join(fmt(r) for r in rows[k:k + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def masked(cp):
    return any(a <= cp <= b for a, b in AFTER_UNICODE_9)


def ccc(cp):
    return 0 if masked(cp) else unicodedata.combining(chr(cp))


def canonical_decomposition(cp):
    """Single-step canonical decomposition as a list of code points, or None."""
    if masked(cp):
        return None
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def nfc_data():
    decomp, exclusions = {}, []
    for cp in range(0x110000):
        d = canonical_decomposition(cp)
        if d is None:
            continue
        assert len(d) in (1, 2), hex(cp)
        assert not any(masked(x) for x in d), hex(cp)
        decomp[cp] = d
        # A two-character decomposition recomposes unless cp is a full composition exclusion, which
        # is exactly when NFC does not give cp back.
        if len(d) == 2 and unicodedata.normalize("NFC", chr(cp)) != chr(cp):
            exclusions.append(cp)
    excluded = set(exclusions)
    composes = {cp: d for cp, d in decomp.items() if len(d) == 2 and cp not in excluded}
    for cp, (a, b) in composes.items():  # primary composites: starter decompositions only
        assert unicodedata.combining(chr(cp)) == 0 and unicodedata.combining(chr(a)) == 0, hex(cp)
    second = {b for _, b in composes.values()}
    quick = {}
    for cp, d in decomp.items():
        if len(d) == 1 or cp in excluded:
            quick[cp] = 2  # No: never in NFC text
    for cp in second:
        assert cp not in quick, hex(cp)
        quick[cp] = 1  # Maybe: may combine with what precedes it
    for lo, hi in (HANGUL_V, HANGUL_T):
        for cp in range(lo, hi + 1):
            quick[cp] = 1
    return decomp, exclusions, quick


def check_hf():
    """Finds the characters whose NFC data HF's tokenizers lacks, i.e. AFTER_UNICODE_9."""
    from tokenizers.normalizers import NFC
    n = NFC().normalize_str
    nfc = lambda s: unicodedata.normalize("NFC", s)
    found = set()
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if n(c) != nfc(c):
            found.add(cp)
        if unicodedata.combining(c):
            # Reordered against marks of class 1 and 232 exactly as its class says?
            for s in ("a" + c + "\u0334", "a\u0315" + c, "a\u0334" + c + "\u0316"):
                if n(s) != nfc(s):
                    found.add(cp)
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<"):
            s = unicodedata.normalize("NFD", c)
            if n(s) != nfc(s):
                found.add(cp)
    want = {cp for a, b in AFTER_UNICODE_9 for cp in range(a, b + 1)}
    if found != want:
        print("AFTER_UNICODE_9 is wrong; tokenizers differs from unicodedata on:", file=sys.stderr)
        print([(hex(a), hex(b)) for a, b in ranges(lambda cp: cp in found)], file=sys.stderr)
        return 1
    print(f"AFTER_UNICODE_9 matches tokenizers' NFC ({len(want)} characters)", file=sys.stderr)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--check-hf", action="store_true")
    args = p.parse_args()
    if args.check_hf:
        return check_hf()
    if unicodedata.unidata_version != MASK_VERSION:
        print(f"unicodedata is Unicode {unicodedata.unidata_version}, AFTER_UNICODE_9 was made for "
              f"{MASK_VERSION}: extend it (--check-hf) and update MASK_VERSION", file=sys.stderr)
        return 1
    cat = lambda cp: unicodedata.category(chr(cp))
    letter = ranges(lambda cp: cat(cp) in ("Lu", "Ll", "Lt", "Lm", "Lo"))
    number = ranges(lambda cp: cat(cp) in ("Nd", "Nl", "No"))
    decomp, exclusions, quick = nfc_data()
    print(f"// Generated by engine/unicode_tables.py from Unicode {unicodedata.unidata_version}; do not edit.")
    print("// Included by engine/tokenizer.cpp inside its namespace; CodepointRange is {first, last}.")
    print(emit("kLetterRanges", letter))
    print(emit("kNumberRanges", number))
    print(emit("kWhiteSpaceRanges", WHITE_SPACE))
    print("// NFC data as HF tokenizers has it: Unicode 9.0.0, i.e. the above without what characters assigned")
    print("// in 10.0+ bring (unicode_tables.py's AFTER_UNICODE_9). CodepointValue is {first, last, value};")
    print("// Decomposition is {cp, first, second}, second 0 for a singleton.")
    print(emit_rows("CodepointValue", "kCombiningClassRanges", valued_ranges(ccc), 6,
                    lambda r: f"{{0x{r[0]:X},0x{r[1]:X},{r[2]}}}"))
    print(emit_rows("Decomposition", "kCanonicalDecompositions", [(cp, *d, 0)[:3] for cp, d in sorted(decomp.items())], 6,
                    lambda r: f"{{0x{r[0]:X},0x{r[1]:X},0x{r[2]:X}}}"))
    print(emit_rows("char32_t", "kCompositionExclusions", exclusions, 12, lambda cp: f"0x{cp:X}"))
    print(emit_rows("CodepointValue", "kNfcQuickCheckRanges", valued_ranges(lambda cp: quick.get(cp, 0)), 6,
                    lambda r: f"{{0x{r[0]:X},0x{r[1]:X},{r[2]}}}"))


if __name__ == "__main__":
    sys.exit(main())
