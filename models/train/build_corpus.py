#!/usr/bin/python3
"""Rebuild the EAGLE-3 draft's training corpus, and its committed held-out subset, from Debian packages.

Sources (each document is a whole unit):
  austen  Jane Austen's six novels, one document per novel     r-cran-janeaustenr (read through Rscript)
  kjv     King James Version, one document per book (66)       bible-kjv + bible-kjv-text (the `bible` program)
  web     World English Bible with Deuterocanon, per book (80) sword-text-web + diatheke (module engWEB2015eb)
  linux   C sources and headers of kernel/ mm/ lib/ fs/ext4/ net/ipv4/, one per file
                                                               linux-source-6.1 (read inside the .tar.xz)
  python  the Python 3.11 standard library, one per .py file   libpython3.11-minimal, libpython3.11-stdlib,
                                                               python3-distutils, python3-lib2to3

Split (by whole documents, deterministic): Persuasion; the Bible books in KJV_HELDOUT and WEB_HELDOUT;
linux and python files with sha256("<source>:<path>")[0] % 10 == 0. Everything else is training data.

Outputs (byte-identical across runs on the same package versions):
  models/train/corpus/{train,heldout}.jsonl, MANIFEST.json  (git-ignored)
  models/heldout/*.txt, MANIFEST.json, README.md             (committed: a ~1.5 MB subset of the held-out split)

Usage (repository root; Python 3 standard library only):
  /usr/bin/python3 models/train/build_corpus.py            # check packages, build everything
  /usr/bin/python3 models/train/build_corpus.py --check    # only check packages and print their versions
  sudo /usr/bin/python3 models/train/build_corpus.py --install   # apt-get install what is missing, then build
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("austen", "kjv", "web", "linux", "python")

# Debian package -> what we take from it.
PACKAGES = {
    "r-cran-janeaustenr": "Jane Austen's six novels (R data package, read through Rscript)",
    "bible-kjv": "the `bible` program",
    "bible-kjv-text": "the King James Version text read by `bible`",
    "diatheke": "the SWORD command-line front end",
    "sword-text-web": "the World English Bible SWORD module engWEB2015eb",
    "linux-source-6.1": "/usr/src/linux-source-6.1.tar.xz",
    "libpython3.11-minimal": "Python 3.11 standard library (core modules)",
    "libpython3.11-stdlib": "Python 3.11 standard library",
    "python3-distutils": "Python 3.11 distutils",
    "python3-lib2to3": "Python 3.11 lib2to3",
}
# The versions the committed models/heldout/ was built from; others give a warning (the text may differ).
EXPECTED_VERSIONS = {
    "r-cran-janeaustenr": "1.0.0-1",
    "bible-kjv": "4.38",
    "bible-kjv-text": "4.38",
    "diatheke": "1.9.0+dfsg-4+b4",
    "sword-text-web": "426.0-1",
    "linux-source-6.1": "6.1.192-3",
    "libpython3.11-minimal": "3.11.2-6+deb12u6",
    "libpython3.11-stdlib": "3.11.2-6+deb12u6",
    "python3-distutils": "3.11.2-3",
    "python3-lib2to3": "3.11.2-3",
}
PROGRAMS = {"Rscript": "r-base-core", "bible": "bible-kjv", "diatheke": "diatheke"}
SOURCE_PACKAGE = {"austen": "r-cran-janeaustenr", "kjv": "bible-kjv-text", "web": "sword-text-web",
                  "linux": "linux-source-6.1"}  # python: the package that owns the file

# ---------------------------------------------------------------------------------------------------------
# Split rule

AUSTEN_HELDOUT = ("persuasion",)
KJV_HELDOUT = ("ruth", "romans", "judges", "jeremiah")   # 2.7K, 9.9K, 19.6K and 44.1K words
WEB_HELDOUT = ("jonah", "1-corinthians", "acts", "ezekiel")   # other books than the KJV ones: 1.3K-39K words
CODE_HELDOUT_MODULUS = 10                                # sha256("<source>:<path>")[0] % 10 == 0: ~10%


def is_heldout(source, key):
    """Held-out rule. key: the slug of the novel or book (austen, kjv, web), the path (linux, python)."""
    if source == "austen":
        return key in AUSTEN_HELDOUT
    if source == "kjv":
        return key in KJV_HELDOUT
    if source == "web":
        return key in WEB_HELDOUT
    if source in ("linux", "python"):
        return hashlib.sha256(f"{source}:{key}".encode("utf-8")).digest()[0] % CODE_HELDOUT_MODULUS == 0
    raise ValueError(f"unknown source {source!r}")


# The committed subset (models/heldout/): these whole documents, plus COMMITTED_CODE_FILES linux and python
# files chosen from the held-out split. Every committed document has at least COMMITTED_MIN_BYTES (more than
# 8K tokens at 3-4 characters per token).
COMMITTED_DOCS = {"austen": ("persuasion",), "kjv": ("romans", "judges"), "web": ("1-corinthians", "acts")}
COMMITTED_CODE_FILES = 6
COMMITTED_MIN_BYTES = 40_000
COMMITTED_BOOK_MIN_BYTES = 100_000   # at least one committed book per translation this long
# Stdlib files the Debian copyright file gives a licence other than the PSF's (Lib/logging/*,
# Lib/multiprocessing/*, Lib/sqlite3/*, Lib/async*, Lib/tarfile.py, Lib/turtle.py): never committed.
PYTHON_OTHER_LICENCE = re.compile(r"^(logging/|multiprocessing/|sqlite3/|async|tarfile\.py$|turtle\.py$)")
# ... nor files that carry a licence grant of their own (e.g. xmlrpc/client.py, Secret Labs AB).
PYTHON_OWN_LICENCE_TEXT = re.compile(r"Permission to use, copy, modify|Permission is hereby granted|"
                                     r"Redistribution and use in source")
COMMITTED_MAX_TRAIN_OVERLAP = 0.05   # of the sampled 200-character windows found verbatim in training text
LINUX_GPL2_ONLY = re.compile(r"SPDX-License-Identifier:\s*(GPL-2\.0(-only|\+|-or-later)?)\s*(\*/)?\s*$")


def slugify(name):
    """'Song of Solomon' -> 'song-of-solomon', 'kernel/sched/fair.c' -> 'kernel-sched-fair.c'."""
    s = re.sub(r"[^a-z0-9._]+", "-", name.lower())
    return s.strip("-")


def heldout_filename(source, title):
    return f"{source}--{slugify(title)}.txt"


# ---------------------------------------------------------------------------------------------------------
# Packages

def package_versions(names):
    """{package: version or None when not installed}."""
    out = {}
    for name in names:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", name],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        status, _, version = r.stdout.partition("\t")
        out[name] = version if r.returncode == 0 and status.endswith(" installed") else None
    return out


def apt_line(missing):
    return "apt-get install --no-install-recommends " + " ".join(missing)


def check_packages(install=False):
    """Return {package: version}; exit 2 naming what is missing (after apt-get with install=True)."""
    if shutil.which("dpkg-query") is None:
        sys.exit("dpkg-query not found: the corpus is built from Debian 12 packages, on Debian 12")
    versions = package_versions(PACKAGES)
    missing = [p for p, v in versions.items() if v is None]
    if missing and install:
        if os.geteuid() != 0:
            sys.exit(f"--install: must be root to run: apt-get update && {apt_line(missing)}")
        print(f"+ apt-get update && {apt_line(missing)} -y", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
        versions = package_versions(PACKAGES)
        missing = [p for p, v in versions.items() if v is None]
    if missing:
        lines = [f"missing Debian package(s): {' '.join(missing)}"]
        lines += [f"  {p}: {PACKAGES[p]}" for p in missing]
        lines += ["install them (as root) with:", f"  {apt_line(missing)}",
                  "or run this script with --install as root"]
        print("\n".join(lines), file=sys.stderr)
        sys.exit(2)
    absent = [f"{prog} (package {pkg})" for prog, pkg in PROGRAMS.items() if shutil.which(prog) is None]
    if absent:
        print(f"missing program(s): {', '.join(absent)}", file=sys.stderr)
        sys.exit(2)
    for p, v in versions.items():
        if v != EXPECTED_VERSIONS[p]:
            print(f"warning: {p} {v} differs from {EXPECTED_VERSIONS[p]}, the version models/heldout/ was "
                  f"built from; the texts may differ", file=sys.stderr)
    return versions


def run_text(cmd):
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode('utf-8', 'replace').strip()}")
    return r.stdout.decode("utf-8")


def doc(source, key, title, text, seq, package, path=None):
    d = {"id": f"{source}:{key}", "source": source, "title": title, "text": text,
         "seq": seq, "key": key, "package": package}
    if path is not None:
        d["path"] = path
    return d


# ---------------------------------------------------------------------------------------------------------
# Jane Austen

AUSTEN_R = r"""
library(janeaustenr)
b <- austen_books()
for (n in levels(b$book)) {
  cat("\036BOOK\t", n, "\n", sep = "")
  writeLines(b$text[b$book == n], useBytes = TRUE)
}
"""


def austen_text(lines):
    """Novel lines -> document text: trailing spaces and leading/trailing blank lines removed."""
    lines = [ln.rstrip() for ln in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def load_austen():
    out = run_text(["Rscript", "--vanilla", "-e", AUSTEN_R])
    docs = []
    for i, chunk in enumerate(out.split("\036BOOK\t")[1:]):
        title, _, body = chunk.partition("\n")
        docs.append(doc("austen", slugify(title), title, austen_text(body.split("\n")), i, SOURCE_PACKAGE["austen"]))
    if len(docs) != 6:
        sys.exit(f"janeaustenr: expected 6 novels, got {len(docs)}")
    return docs


# ---------------------------------------------------------------------------------------------------------
# The Bibles

BOOKS_66 = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth", "1 Samuel",
    "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job",
    "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations", "Ezekiel",
    "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai",
    "Zechariah", "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians",
    "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians",
    "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter",
    "1 John", "2 John", "3 John", "Jude", "Revelation"]
# The book abbreviations `bible -f` prints, in the same order.
KJV_ABBREVIATIONS = (
    "Ge Exo Lev Num Deu Josh Jdgs Ruth 1Sm 2Sm 1Ki 2Ki 1Chr 2Chr Ezra Neh Est Job Psa Prv Eccl SSol Isa Jer "
    "Lam Eze Dan Hos Joel Amos Obad Jonah Mic Nahum Hab Zep Hag Zec Mal Mat Mark Luke John Acts Rom 1Cor 2Cor "
    "Gal Eph Phi Col 1Th 2Th 1Tim 2Tim Titus Phmn Heb Jas 1Pet 2Pet 1Jn 2Jn 3Jn Jude Rev").split()
# engWEB2015eb (NRSVA versification): (OSIS id we query, book name diatheke prints, our title). The module's
# Prayer of Azariah, Susanna and Bel and the Dragon have verses but no text, so they are not listed.
WEB_DEUTEROCANON = [
    ("Tob", "Tobit", "Tobit"), ("Jdt", "Judith", "Judith"), ("EsthGr", "Esther (Greek)", "Esther (Greek)"),
    ("Wis", "Wisdom", "Wisdom"), ("Sir", "Sirach", "Sirach"), ("Bar", "Baruch", "Baruch"),
    ("1Macc", "I Maccabees", "1 Maccabees"),
    ("2Macc", "II Maccabees", "2 Maccabees"), ("1Esd", "I Esdras", "1 Esdras"),
    ("PrMan", "Prayer of Manasses", "Prayer of Manasses"), ("AddPs", "Additional Psalm", "Psalm 151"),
    ("3Macc", "III Maccabees", "3 Maccabees"), ("2Esd", "II Esdras", "2 Esdras"),
    ("4Macc", "IV Maccabees", "4 Maccabees")]
WEB_OSIS_66 = (
    "Gen Exod Lev Num Deut Josh Judg Ruth 1Sam 2Sam 1Kgs 2Kgs 1Chr 2Chr Ezra Neh Esth Job Ps Prov Eccl Song Isa "
    "Jer Lam Ezek Dan Hos Joel Amos Obad Jonah Mic Nah Hab Zeph Hag Zech Mal Matt Mark Luke John Acts Rom 1Cor "
    "2Cor Gal Eph Phil Col 1Thess 2Thess 1Tim 2Tim Titus Phlm Heb Jas 1Pet 2Pet 1John 2John 3John Jude Rev"
).split()


def _web_module_name(title):
    """Our title -> the name diatheke prints ('1 Samuel' -> 'I Samuel', 'Revelation' -> 'Revelation of John')."""
    if title == "Revelation":
        return "Revelation of John"
    m = re.match(r"^([123]) (.*)$", title)
    return f"{'I' * int(m.group(1))} {m.group(2)}" if m else title


WEB_BOOKS = ([(o, _web_module_name(t), t) for o, t in zip(WEB_OSIS_66[:39], BOOKS_66[:39])] + WEB_DEUTEROCANON
             + [(o, _web_module_name(t), t) for o, t in zip(WEB_OSIS_66[39:], BOOKS_66[39:])])


def render_bible_book(title, verses):
    """A book as readable text. verses: [(chapter, verse, text, headings)] in order; headings (e.g. a psalm's
    title) are lines printed before the verse. Output: the title, then per chapter a 'Chapter N' ('Psalm N'
    in Psalms) heading and one line per verse, 'N text'. Verses with empty text are left out."""
    out = [title, ""]
    chapter = None
    for ch, vs, text, headings in verses:
        if ch != chapter:
            if chapter is not None:
                out.append("")
            out += [f"{'Psalm' if title == 'Psalms' else 'Chapter'} {ch}", ""]
            chapter = ch
        out += [h for h in headings if h]
        if text:
            out.append(f"{vs} {text}")
    return "\n".join(out) + "\n"


KJV_LINE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def parse_kjv(output):
    """`bible -f` output ('Ge1:1 In the beginning ...' per line) -> [(abbreviation, [(ch, vs, text, [])])]."""
    books = []
    for line in output.splitlines():
        if not line.strip():
            continue
        m = KJV_LINE.match(line)
        if not m:
            raise ValueError(f"bible: unexpected line {line[:80]!r}")
        abbr, ch, vs, text = m.group(1), int(m.group(2)), int(m.group(3)), re.sub(r"\s+", " ", m.group(4)).strip()
        if not books or books[-1][0] != abbr:
            books.append((abbr, []))
        books[-1][1].append((ch, vs, text, []))
    return books


def load_kjv():
    books = parse_kjv(run_text(["bible", "-f", "-p", "/usr/lib", "Gen1:1-Rev22:21"]))
    got = [b[0] for b in books]
    if got != KJV_ABBREVIATIONS:
        sys.exit(f"bible: unexpected books {got}")
    return [doc("kjv", slugify(title), title, render_bible_book(title, verses), i, SOURCE_PACKAGE["kjv"])
            for i, (title, (_, verses)) in enumerate(zip(BOOKS_66, books))]


# OSIS markup -> text. The engWEB2015eb module has adjacent word elements with no space between them
# (`<w>God</w><w>created</w>`, `men<w>from</w>`, `”</q><w>says</w>`); diatheke's plain renderer drops the
# tags and so glues the words ("Godcreated"). We put a space where a run of tags that opens an element
# separates the end of a word from the start of the next.
_TAG_RUN = re.compile(r"(?:<[^>]*>)+")
_WORD_END = set(".,;:!?)”’")
_WORD_START = set("“‘(")
_DROP = re.compile(r"<(note|speaker|title)\b[^>]*>.*?</\1>", re.S)
_BOOK_END = re.compile(r"<div\b[^>]*\beID=\"[^\"]*\"[^>]*\btype=\"book\"[^>]*/>")


def osis_to_text(markup):
    """OSIS fragment -> plain text (tags dropped, spaces repaired, whitespace collapsed)."""
    markup = _DROP.sub(" ", markup)
    out = []
    pos = 0
    before = ""
    for m in _TAG_RUN.finditer(markup):
        chunk = markup[pos:m.start()]
        out.append(chunk)
        before = chunk[-1:] or before
        after = markup[m.end():m.end() + 1]
        opens = re.search(r"<[^/!?]", m.group(0)) is not None
        if (opens and before and after and (before.isalnum() or before in _WORD_END)
                and (after.isalnum() or after in _WORD_START)):
            out.append(" ")
            before = " "
        pos = m.end()
    out.append(markup[pos:])
    text = "".join(out)
    for a, b in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        text = text.replace(a, b)
    return re.sub(r"\s+", " ", text).strip()


def parse_web_book(output, module_name):
    """`diatheke -f internal -o h -k <book>` output -> [(ch, vs, text, headings)].
    Each line is '<pre-verse markup>Name C:V: <verse markup>'; the pre-verse markup holds canonical titles
    (psalm titles, the acrostic letters of Psalm 119). diatheke repeats one entry's pre-verse markup on
    following lines, so a title is taken only when its pre-verse markup differs from the previous line's
    (the repeated copies are identical, element ids included)."""
    key = re.compile(r"^(.*?)" + re.escape(module_name) + r" (\d+):(\d+): (.*)$")
    verses, last_pre = [], None
    for line in output.split("\n"):
        if not line.strip() or line.strip() == "(engWEB2015eb)":
            continue
        m = key.match(line)
        if not m:
            raise ValueError(f"diatheke: unexpected line {line[:120]!r}")
        pre, ch, vs, body = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        headings = []
        if pre != last_pre:
            for t in re.finditer(r"<title\b[^>]*\bcanonical=\"true\"[^>]*>(.*?)</title>", pre, re.S):
                headings.append(osis_to_text(t.group(1)))
        last_pre = pre
        end = _BOOK_END.search(body)   # after the last verse of Revelation: the WEB glossary
        if end:
            body = body[:end.start()]
        verses.append((ch, vs, osis_to_text(body), headings))
    return verses


def load_web():
    def fetch(osis):
        return run_text(["diatheke", "-b", "engWEB2015eb", "-f", "internal", "-o", "h", "-l", "en", "-k", osis])

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:   # results keep WEB_BOOKS order
        outputs = list(pool.map(fetch, [osis for osis, _, _ in WEB_BOOKS]))
    docs = []
    for i, ((osis, module_name, title), out) in enumerate(zip(WEB_BOOKS, outputs)):
        verses = parse_web_book(out, module_name)
        if not any(v[2] for v in verses):
            sys.exit(f"diatheke: no text for {osis}")
        docs.append(doc("web", slugify(title), title, render_bible_book(title, verses), i, SOURCE_PACKAGE["web"]))
    return docs


# ---------------------------------------------------------------------------------------------------------
# Linux

LINUX_TARBALL = "/usr/src/linux-source-6.1.tar.xz"
LINUX_PREFIX = "linux-source-6.1/"
LINUX_DIRS = ("kernel/", "mm/", "lib/", "fs/ext4/", "net/ipv4/")
LINUX_MAX_HEX_FRACTION = 0.15   # files that are mostly hex tables (fonts, CRC tables, test vectors) are left out
_HEX = re.compile(r"0x[0-9a-fA-F]+")


def hex_fraction(text):
    return sum(len(x) for x in _HEX.findall(text)) / max(1, len(text))


def linux_wanted(path):
    return path.endswith((".c", ".h")) and path.startswith(LINUX_DIRS)


def load_linux(stats):
    docs = []
    with tarfile.open(LINUX_TARBALL, "r:xz") as tf:
        for m in tf:
            if not m.isfile() or not m.name.startswith(LINUX_PREFIX):
                continue
            path = m.name[len(LINUX_PREFIX):]
            if not linux_wanted(path):
                continue
            data = tf.extractfile(m).read()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                stats["linux_not_utf8"] = stats.get("linux_not_utf8", 0) + 1
                continue
            if hex_fraction(text) > LINUX_MAX_HEX_FRACTION:
                stats.setdefault("linux_hex_tables", []).append(path)
                continue
            docs.append(doc("linux", path, path, text, 0, SOURCE_PACKAGE["linux"], path))
    stats.get("linux_hex_tables", []).sort()
    return docs


# ---------------------------------------------------------------------------------------------------------
# Python

PYTHON_PACKAGES = ("libpython3.11-minimal", "libpython3.11-stdlib", "python3-distutils", "python3-lib2to3")
PYTHON_ROOT = "/usr/lib/python3.11/"
PYTHON_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}


def python_wanted(rel):
    parts = rel.split("/")
    return (rel.endswith(".py") and not any(p in PYTHON_SKIP_DIRS for p in parts[:-1])
            and not parts[-1].startswith("_sysconfigdata"))   # build configuration, differs per architecture


def load_python(stats):
    owner = {}
    for pkg in PYTHON_PACKAGES:
        for line in run_text(["dpkg", "-L", pkg]).splitlines():
            if line.startswith(PYTHON_ROOT):
                rel = line[len(PYTHON_ROOT):]
                if python_wanted(rel):
                    owner.setdefault(rel, pkg)
    docs = []
    for rel in sorted(owner):
        p = PYTHON_ROOT + rel
        if os.path.islink(p) or not os.path.isfile(p):   # sitecustomize.py links to /etc
            continue
        try:
            text = Path(p).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            stats["python_not_utf8"] = stats.get("python_not_utf8", 0) + 1
            continue
        docs.append(doc("python", rel, rel, text, 0, owner[rel], rel))
    return docs


# ---------------------------------------------------------------------------------------------------------
# Split, checks, writing

def sort_key(d):
    return (SOURCES.index(d["source"]), d["seq"], d["id"])


def dedupe(docs, stats):
    """Drop empty documents and exact duplicates (the first in sort order stays)."""
    seen, out = set(), []
    for d in sorted(docs, key=sort_key):
        if not d["text"].strip():
            stats[f"{d['source']}_empty"] = stats.get(f"{d['source']}_empty", 0) + 1
            continue
        h = hashlib.sha256(d["text"].encode("utf-8")).digest()
        if h in seen:
            stats[f"{d['source']}_duplicates"] = stats.get(f"{d['source']}_duplicates", 0) + 1
            continue
        seen.add(h)
        out.append(d)
    return out


def jsonl_bytes(docs):
    """One JSON object per line, {"id", "source", "title", "text"}, in sort order: deterministic bytes.
    U+2028, U+2029 and U+0085 are escaped too, so that no line reader can split a record."""
    lines = []
    for d in sorted(docs, key=sort_key):
        s = json.dumps({"id": d["id"], "source": d["source"], "title": d["title"], "text": d["text"]},
                       ensure_ascii=False)
        s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\u0085", "\\u0085")
        lines.append(s + "\n")
    return "".join(lines).encode("utf-8")


def write_bytes(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def json_bytes(obj):
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def split_counts(docs):
    out = {s: {"documents": 0, "bytes": 0} for s in SOURCES}
    for d in docs:
        out[d["source"]]["documents"] += 1
        out[d["source"]]["bytes"] += len(d["text"].encode("utf-8"))
    out["total"] = {"documents": sum(v["documents"] for v in out.values()),
                    "bytes": sum(v["bytes"] for v in out.values())}
    return out


def check_no_leak(train, heldout):
    train_ids = {d["id"] for d in train}
    train_hashes = {hashlib.sha256(d["text"].encode("utf-8")).digest() for d in train}
    for d in heldout:
        if d["id"] in train_ids:
            sys.exit(f"held-out document {d['id']} is also in the training split")
        if hashlib.sha256(d["text"].encode("utf-8")).digest() in train_hashes:
            sys.exit(f"the text of held-out document {d['id']} is also in the training split")


def train_overlap(text, train_blob, width=200, step=2000):
    """Fraction of `width`-character windows, taken every `step` characters, found verbatim in train_blob."""
    windows = [text[i:i + width] for i in range(0, max(1, len(text) - width), step)]
    windows = [w for w in windows if len(w.strip()) >= width // 2]
    return sum(1 for w in windows if w in train_blob) / max(1, len(windows))


def heldout_overlap(heldout, train):
    blobs = {s: "\n".join(d["text"] for d in train if d["source"] == s) for s in SOURCES}
    out = {}
    for d in sorted(heldout, key=sort_key):
        share = train_overlap(d["text"], blobs[d["source"]])
        if share > 0:
            out[d["id"]] = round(share, 3)
    return out


def select_committed(heldout, train):
    """The committed subset: COMMITTED_DOCS, then per code source the COMMITTED_CODE_FILES smallest held-out
    files of at least COMMITTED_MIN_BYTES whose licence is the source's main one alone and of whose
    200-character windows (one every 2000 characters) at most COMMITTED_MAX_TRAIN_OVERLAP occur verbatim in
    the training split (a shared licence text or docstring is allowed, a copied file is not)."""
    by_key = {(d["source"], d["key"]): d for d in heldout}
    chosen = []
    for source, keys in COMMITTED_DOCS.items():
        for k in keys:
            if (source, k) not in by_key:
                sys.exit(f"committed document {source}:{k} is not in the held-out split")
            if len(by_key[(source, k)]["text"].encode("utf-8")) < COMMITTED_MIN_BYTES:
                sys.exit(f"committed document {source}:{k} is shorter than {COMMITTED_MIN_BYTES} bytes")
            chosen.append(by_key[(source, k)])
        if source in ("kjv", "web") and max(len(by_key[(source, k)]["text"].encode()) for k in keys) \
                < COMMITTED_BOOK_MIN_BYTES:
            sys.exit(f"no committed {source} book of {COMMITTED_BOOK_MIN_BYTES} bytes or more")
    for source in ("linux", "python"):
        blob = "\n".join(d["text"] for d in train if d["source"] == source)
        cands = sorted((d for d in heldout if d["source"] == source
                        and len(d["text"].encode("utf-8")) >= COMMITTED_MIN_BYTES),
                       key=lambda d: (len(d["text"].encode("utf-8")), d["id"]))
        picked = []
        for d in cands:
            if source == "python" and (PYTHON_OTHER_LICENCE.match(d["path"])
                                       or PYTHON_OWN_LICENCE_TEXT.search(d["text"])):
                continue
            if source == "linux" and linux_spdx(d["text"]) is None:
                continue
            if train_overlap(d["text"], blob) > COMMITTED_MAX_TRAIN_OVERLAP:
                continue
            picked.append(d)
            if len(picked) == COMMITTED_CODE_FILES:
                break
        if len(picked) < COMMITTED_CODE_FILES:
            sys.exit(f"only {len(picked)} {source} held-out files qualify for the committed subset")
        chosen += sorted(picked, key=sort_key)
    return chosen


def linux_spdx(text):
    """The SPDX licence of a Linux file when it is GPL-2.0 alone (first two lines), else None."""
    for line in text.split("\n", 2)[:2]:
        m = LINUX_GPL2_ONLY.search(line)
        if m:
            return m.group(1)
    return None


def licence_of(d):
    return {"austen": "public domain", "kjv": "public domain", "web": "public domain",
            "linux": f"GPL-2.0 (SPDX: {linux_spdx(d['text'])})" if d["source"] == "linux" else None,
            "python": "PSF License Version 2 (Python-2.0)"}[d["source"]]


HELDOUT_README = """# Held-out documents (committed)

Whole documents from the **held-out split** of the EAGLE-3 draft's training corpus: no held-out
document is in the training split (`models/train/corpus/train.jsonl`). Evaluation tasks use them as
long contexts: every file has at least {min_bytes} bytes, more than 8K tokens at 3–4 characters per
token. Plain UTF-8, written by `models/train/build_corpus.py` from Debian 12 packages;
`MANIFEST.json` gives each file's source, title, size, sha256, package and package version, and
`models/train/test_build_corpus.py` checks the files against it.

Regenerate (repository root, where the packages are installed; byte-identical for the same package
versions — `build_corpus.py --check` lists what is missing and the `apt-get` line):

```sh
/usr/bin/python3 models/train/build_corpus.py      # also rebuilds models/train/corpus/
```

| file | bytes | Debian package, version | licence |
|---|---:|---|---|
{rows}

Total: {total} bytes in {count} files.

## Where the texts come from, and their licences

- **Jane Austen**, *Persuasion* (1818), from `r-cran-janeaustenr` {v_austen}: the R package's
  Project Gutenberg text, its lines as they are. The novel is in the public domain; the R package is
  MIT-licensed (`/usr/share/doc/r-cran-janeaustenr/copyright`).
- **King James Version** (1611), from `bible-kjv-text` {v_kjv}, read with the `bible` program of
  `bible-kjv` {v_kjvprog}. The translation's copyright has expired
  (`/usr/share/doc/bible-kjv-text/copyright`); the program is GPL-2+.
- **World English Bible** (2020 stable text, with Deuterocanon), the SWORD module `engWEB2015eb`
  of `sword-text-web` {v_web}, read with `diatheke` {v_diatheke}. Public domain
  (`/usr/share/doc/sword-text-web/copyright`); "World English Bible" is a trademark of eBible.org
  and a changed text should not carry that name. Ours changes no words: it lays the verses out as
  below and restores the spaces that the module's word markup loses ("God created", where
  diatheke's plain output prints "Godcreated").
- **Linux** 6.1, files of `/usr/src/linux-source-6.1.tar.xz` from `linux-source-6.1` {v_linux},
  verbatim. GPL-2.0 (`/usr/share/doc/linux-source-6.1/copyright`); every file here has an
  `SPDX-License-Identifier` of GPL-2.0 alone (table above). The licence text is
  `/usr/share/common-licenses/GPL-2` on Debian.
- **Python** 3.11 standard library, files under `/usr/lib/python3.11/` from {python_pkgs},
  verbatim. PSF License Version 2 (`/usr/share/doc/libpython3.11-stdlib/copyright`). Files to which
  that copyright file gives another licence (`logging/`, `multiprocessing/`, `sqlite3/`, `async*`,
  `tarfile.py`, `turtle.py`), and files with a licence grant of their own, are never chosen here.

A Bible book is laid out as its name, a `Chapter N` heading per chapter (`Psalm N` in Psalms), and
one line per verse, `N text`; a psalm's title is a line before its first verse.

## How the held-out split and this subset are chosen

- Held-out split: Austen's *Persuasion*; the KJV books {kjv_books}; the WEB books {web_books}; the
  Linux and Python files whose `sha256("<source>:<path>")` has a first byte divisible by {modulus}
  (about 10% of them).
- This subset: {committed_docs}; and per code source the {ncode} smallest held-out files of at least
  {min_bytes} bytes under the licence above, of whose 200-character windows (one every 2000
  characters) at most {max_overlap:.0%} occur verbatim in the training split (a shared licence
  paragraph or docstring may; a copied file may not).
"""


def write_committed(chosen, versions, outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = [heldout_filename(d["source"], d["title"]) for d in chosen]
    if len(set(names)) != len(names):
        sys.exit("held-out file names collide")
    for old in sorted(outdir.glob("*--*.txt")):   # files of an earlier selection
        if old.name not in names:
            old.unlink()
    manifest, rows = [], []
    for d, name in zip(chosen, names):
        data = d["text"].encode("utf-8")
        sha = write_bytes(outdir / name, data)
        manifest.append({"file": name, "id": d["id"], "source": d["source"], "title": d["title"],
                         "bytes": len(data), "sha256": sha, "package": d["package"],
                         "package_version": versions[d["package"]]})
        rows.append(f"| `{name}` | {len(data)} | {d['package']} {versions[d['package']]} | {licence_of(d)} |")
    write_bytes(outdir / "MANIFEST.json", json_bytes(manifest))
    committed_docs = "; ".join(f"{s} {', '.join(k)}" for s, k in COMMITTED_DOCS.items())
    readme = HELDOUT_README.format(
        min_bytes=COMMITTED_MIN_BYTES, rows="\n".join(rows), total=sum(m["bytes"] for m in manifest),
        count=len(manifest), v_austen=versions["r-cran-janeaustenr"], v_kjv=versions["bible-kjv-text"],
        v_kjvprog=versions["bible-kjv"], v_web=versions["sword-text-web"], v_diatheke=versions["diatheke"],
        v_linux=versions["linux-source-6.1"],
        python_pkgs=", ".join(f"`{p}` {versions[p]}" for p in PYTHON_PACKAGES),
        kjv_books=", ".join(KJV_HELDOUT), web_books=", ".join(WEB_HELDOUT), modulus=CODE_HELDOUT_MODULUS,
        committed_docs=committed_docs, ncode=COMMITTED_CODE_FILES,
        max_overlap=COMMITTED_MAX_TRAIN_OVERLAP)
    write_bytes(outdir / "README.md", readme.encode("utf-8"))
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--check", action="store_true", help="only check the packages and print their versions")
    ap.add_argument("--install", action="store_true", help="apt-get install missing packages (as root)")
    ap.add_argument("--out", default=str(REPO / "models/train/corpus"), help="corpus folder (git-ignored)")
    ap.add_argument("--heldout-out", default=str(REPO / "models/heldout"),
                    help="folder of the committed held-out subset (default models/heldout/)")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    versions = check_packages(install=args.install)
    if args.check:
        for p, v in versions.items():
            print(f"{p}\t{v}")
        return 0

    stats = {}
    docs = []
    for name, loader in (("austen", load_austen), ("kjv", load_kjv), ("web", load_web),
                         ("linux", lambda: load_linux(stats)), ("python", lambda: load_python(stats))):
        t = time.monotonic()
        got = loader()
        print(f"{name}: {len(got)} documents, {sum(len(d['text'].encode()) for d in got) / 1e6:.2f} MB "
              f"({time.monotonic() - t:.1f} s)", file=sys.stderr)
        docs += got
    docs = dedupe(docs, stats)
    train = [d for d in docs if not is_heldout(d["source"], d["key"])]
    heldout = [d for d in docs if is_heldout(d["source"], d["key"])]
    check_no_leak(train, heldout)

    out = Path(args.out)
    sha_train = write_bytes(out / "train.jsonl", jsonl_bytes(train))
    sha_heldout = write_bytes(out / "heldout.jsonl", jsonl_bytes(heldout))
    manifest = {
        "generator": "models/train/build_corpus.py",
        "packages": versions,
        "files": {"train.jsonl": {"sha256": sha_train, "bytes": (out / "train.jsonl").stat().st_size},
                  "heldout.jsonl": {"sha256": sha_heldout, "bytes": (out / "heldout.jsonl").stat().st_size}},
        "splits": {"train": split_counts(train), "heldout": split_counts(heldout)},
        "split_rule": {
            "austen": list(AUSTEN_HELDOUT), "kjv": list(KJV_HELDOUT), "web": list(WEB_HELDOUT),
            "linux": f"sha256('linux:<path>')[0] % {CODE_HELDOUT_MODULUS} == 0",
            "python": f"sha256('python:<path>')[0] % {CODE_HELDOUT_MODULUS} == 0"},
        "selection": {
            "linux": {"tarball": LINUX_TARBALL, "dirs": list(LINUX_DIRS), "suffixes": [".c", ".h"],
                      "max_hex_fraction": LINUX_MAX_HEX_FRACTION,
                      "left_out_as_hex_tables": stats.get("linux_hex_tables", [])},
            "python": {"root": PYTHON_ROOT, "packages": list(PYTHON_PACKAGES),
                       "skipped_dirs": sorted(PYTHON_SKIP_DIRS), "skipped_files": "_sysconfigdata*, symlinks"},
            "web": {"module": "engWEB2015eb", "books": len(WEB_BOOKS)},
        },
        "dropped": {k: v for k, v in sorted(stats.items()) if k != "linux_hex_tables"},
        "heldout_ids": [d["id"] for d in sorted(heldout, key=sort_key)],
        # Near-copies: the share of a held-out document's 200-character windows (one every 2000 characters)
        # found verbatim in the training text of its source; documents with none are not listed.
        "heldout_train_overlap": heldout_overlap(heldout, train),
    }
    write_bytes(out / "MANIFEST.json", json_bytes(manifest))

    chosen = select_committed(heldout, train)
    committed = write_committed(chosen, versions, args.heldout_out)

    for split, counts in (("train", manifest["splits"]["train"]), ("heldout", manifest["splits"]["heldout"])):
        print(f"{split:8s} " + "  ".join(f"{s} {c['documents']} docs {c['bytes'] / 1e6:.2f} MB"
                                         for s, c in counts.items()), file=sys.stderr)
    print(f"wrote {out}/train.jsonl (sha256 {sha_train[:16]}), heldout.jsonl (sha256 {sha_heldout[:16]}), "
          f"MANIFEST.json; {len(committed)} committed held-out files "
          f"({sum(m['bytes'] for m in committed)} bytes) in {args.heldout_out}; "
          f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
