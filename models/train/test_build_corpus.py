"""Tests of build_corpus.py's pure functions, and of the committed models/heldout/ against its MANIFEST.json.
Standard library only; none of the Debian packages the corpus comes from is needed.

    /usr/bin/python3 -m unittest discover -s models/train -p 'test_*.py'
"""
import hashlib
import json
import random
import sys
import unittest
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import build_corpus as bc  # noqa: E402


class HeldoutRule(unittest.TestCase):
    def test_named_documents(self):
        self.assertTrue(bc.is_heldout("austen", "persuasion"))
        self.assertFalse(bc.is_heldout("austen", "emma"))
        self.assertTrue(bc.is_heldout("kjv", "ruth"))
        self.assertFalse(bc.is_heldout("web", "ruth"))
        self.assertTrue(bc.is_heldout("web", "jonah"))
        self.assertFalse(bc.is_heldout("kjv", "jonah"))
        self.assertTrue(bc.is_heldout("web", "1-corinthians"))

    def test_translations_hold_out_different_books(self):
        self.assertFalse(set(bc.KJV_HELDOUT) & set(bc.WEB_HELDOUT))
        slugs = {bc.slugify(b) for b in bc.BOOKS_66}
        self.assertLessEqual(set(bc.KJV_HELDOUT) | set(bc.WEB_HELDOUT), slugs)

    def test_code_hash_rule(self):
        for source, path in (("linux", "mm/memblock.c"), ("linux", "kernel/sched/fair.c"),
                             ("python", "urllib/parse.py"), ("python", "os.py")):
            first = hashlib.sha256(f"{source}:{path}".encode()).digest()[0]
            self.assertEqual(bc.is_heldout(source, path), first % 10 == 0, path)
        self.assertTrue(bc.is_heldout("linux", "mm/memblock.c"))
        self.assertFalse(bc.is_heldout("linux", "kernel/sched/fair.c"))
        self.assertTrue(bc.is_heldout("python", "urllib/parse.py"))
        self.assertFalse(bc.is_heldout("python", "os.py"))
        paths = [f"dir{i % 37}/file{i}.c" for i in range(5000)]
        share = sum(bc.is_heldout("linux", p) for p in paths) / len(paths)
        self.assertTrue(0.08 < share < 0.12, share)

    def test_unknown_source(self):
        with self.assertRaises(ValueError):
            bc.is_heldout("gutenberg", "x")


class Naming(unittest.TestCase):
    def test_slugify(self):
        self.assertEqual(bc.slugify("Song of Solomon"), "song-of-solomon")
        self.assertEqual(bc.slugify("1 Samuel"), "1-samuel")
        self.assertEqual(bc.slugify("Esther (Greek)"), "esther-greek")
        self.assertEqual(bc.slugify("Pride & Prejudice"), "pride-prejudice")
        self.assertEqual(bc.slugify("kernel/sched/fair.c"), "kernel-sched-fair.c")
        self.assertEqual(bc.slugify("asyncio/base_events.py"), "asyncio-base_events.py")

    def test_heldout_filename(self):
        self.assertEqual(bc.heldout_filename("austen", "Persuasion"), "austen--persuasion.txt")
        self.assertEqual(bc.heldout_filename("kjv", "Ruth"), "kjv--ruth.txt")
        self.assertEqual(bc.heldout_filename("python", "urllib/parse.py"), "python--urllib-parse.py.txt")

    def test_book_lists(self):
        self.assertEqual(len(bc.BOOKS_66), 66)
        self.assertEqual(len(bc.KJV_ABBREVIATIONS), 66)
        self.assertEqual(len({bc.slugify(b) for b in bc.BOOKS_66}), 66)
        self.assertEqual(len(bc.WEB_BOOKS), 80)
        self.assertEqual(len({bc.slugify(t) for _, _, t in bc.WEB_BOOKS}), 80)
        names = dict((o, n) for o, n, _ in bc.WEB_BOOKS)
        self.assertEqual(names["1Sam"], "I Samuel")
        self.assertEqual(names["3John"], "III John")
        self.assertEqual(names["Rev"], "Revelation of John")


def _doc(source, key, text, seq=0):
    return bc.doc(source, key, key, text, seq, "pkg")


class Jsonl(unittest.TestCase):
    DOCS = [_doc("python", "os.py", "import abc\n"), _doc("austen", "emma", "EMMA\n\u2028x\u2029y\x85z", 3),
            _doc("kjv", "ruth", "Ruth\n", 7), _doc("kjv", "genesis", "Genesis\n", 0),
            _doc("linux", "mm/mmap.c", "/* “é” */\n"), _doc("austen", "persuasion", "P\n", 5)]

    def test_deterministic_and_ordered(self):
        a = bc.jsonl_bytes(self.DOCS)
        for seed in range(5):
            docs = list(self.DOCS)
            random.Random(seed).shuffle(docs)
            self.assertEqual(bc.jsonl_bytes(docs), a)
        lines = a.decode("utf-8").split("\n")
        self.assertEqual(lines[-1], "")
        objs = [json.loads(ln) for ln in lines[:-1]]
        self.assertEqual([o["id"] for o in objs], ["austen:emma", "austen:persuasion", "kjv:genesis", "kjv:ruth",
                                                   "linux:mm/mmap.c", "python:os.py"])
        for o in objs:
            self.assertEqual(list(o), ["id", "source", "title", "text"])
        self.assertEqual(objs[0]["text"], "EMMA\n\u2028x\u2029y\x85z")
        self.assertEqual(objs[4]["text"], "/* “é” */\n")

    def test_no_line_breaking_characters(self):
        data = bc.jsonl_bytes(self.DOCS).decode("utf-8")
        self.assertEqual(len(data.splitlines()), len(self.DOCS))   # splitlines() also splits at U+2028 etc.

    def test_dedupe_and_leak_check(self):
        stats = {}
        docs = bc.dedupe([_doc("python", "b.py", "same\n"), _doc("python", "a.py", "same\n"),
                          _doc("python", "empty.py", " \n")], stats)
        self.assertEqual([d["id"] for d in docs], ["python:a.py"])
        self.assertEqual(stats, {"python_duplicates": 1, "python_empty": 1})
        with self.assertRaises(SystemExit):
            bc.check_no_leak([_doc("python", "a.py", "x\n")], [_doc("python", "b.py", "x\n")])
        bc.check_no_leak([_doc("python", "a.py", "x\n")], [_doc("python", "b.py", "y\n")])

    def test_train_overlap(self):
        text = "".join(f"line {i:05d} of a held-out file\n" for i in range(1000))
        self.assertEqual(bc.train_overlap(text, "something else entirely"), 0)
        self.assertEqual(bc.train_overlap(text, "prefix " + text), 1)


class Bible(unittest.TestCase):
    def test_render(self):
        verses = [(1, 1, "In the beginning.", []), (1, 2, "And the earth.", []),
                  (2, 1, "", []), (2, 2, "Thus.", ["A heading."])]
        self.assertEqual(bc.render_bible_book("Genesis", verses),
                         "Genesis\n\nChapter 1\n\n1 In the beginning.\n2 And the earth.\n\n"
                         "Chapter 2\n\nA heading.\n2 Thus.\n")
        self.assertEqual(bc.render_bible_book("Psalms", [(23, 1, "The LORD.", ["A Psalm of David."])]),
                         "Psalms\n\nPsalm 23\n\nA Psalm of David.\n1 The LORD.\n")

    def test_parse_kjv(self):
        out = "Ge1:1 In the beginning God\nGe1:2 And  the earth\n1Sm3:10 And the LORD came\n\n"
        books = bc.parse_kjv(out)
        self.assertEqual(books, [("Ge", [(1, 1, "In the beginning God", []), (1, 2, "And the earth", [])]),
                                 ("1Sm", [(3, 10, "And the LORD came", [])])])
        with self.assertRaises(ValueError):
            bc.parse_kjv("Genesis 1:1: In the beginning\n")

    def test_markup_space_repair(self):
        t = bc.osis_to_text
        self.assertEqual(t('<w savlm="strong:H0430">God</w><w savlm="strong:H1254">created</w> <w>the</w>'),
                         "God created the")
        self.assertEqual(t("wise men<w>from</w> <w>the</w> <w>east</w>"), "wise men from the east")
        self.assertEqual(t('<w>Omega</w>,</q><q marker="">”</q><w>says</w>'), "Omega,” says")
        self.assertEqual(t('<w>God</w>,<q marker="">“<w>who</w> <w>is</w>'), "God, “who is")
        self.assertEqual(t('<w>light</w>,” <w>and</w>'), "light,” and")
        self.assertEqual(t('“<w>Let</w> <w>there</w>'), "“Let there")
        self.assertEqual(t('<w>Yahweh’s</w> <w>law</w>.<l eID="x"/> <l sID="y"/>Selah.'), "Yahweh’s law. Selah.")
        self.assertEqual(t("increased!<l eID='a'/><l sID='b'/>Many"), "increased! Many")
        self.assertEqual(t("After this—<w>after</w> he"), "After this—after he")
        self.assertEqual(t("rooms. <speaker>Friends</speaker> We"), "rooms. We")
        self.assertEqual(t("a &amp; b &lt;c&gt;"), "a & b <c>")

    def test_parse_web_book(self):
        out = ('<title canonical="true" type="psalm">A Psalm by David.</title> <l sID="g1"/>Psalms 3:1: '
               '<w>Yahweh</w>, <w>how</w>\n'
               '<title canonical="true" type="psalm">A Psalm by David.</title> <l sID="g1"/>Psalms 3:2: '
               '<w>Many</w><w>there</w>\n'
               '<title canonical="true" type="psalm">By David.</title> <l sID="g7"/>Psalms 4:1: Answer me '
               '<div canonical="true" eID="g0" osisID="Ps" type="book"/> <title>Glossary</title> words\n'
               '(engWEB2015eb)\n')
        self.assertEqual(bc.parse_web_book(out, "Psalms"), [
            (3, 1, "Yahweh, how", ["A Psalm by David."]),
            (3, 2, "Many there", []),                    # the repeated pre-verse markup is not a new title
            (4, 1, "Answer me", ["By David."])])
        with self.assertRaises(ValueError):
            bc.parse_web_book("Genesis 1:1: text\n", "Exodus")

    def test_web_module_names(self):
        self.assertEqual(bc._web_module_name("2 Chronicles"), "II Chronicles")
        self.assertEqual(bc._web_module_name("Song of Solomon"), "Song of Solomon")


class Selection(unittest.TestCase):
    def test_austen_text(self):
        self.assertEqual(bc.austen_text(["", "PERSUASION  ", "", "Chapter 1", "", ""]),
                         "PERSUASION\n\nChapter 1\n")

    def test_linux_and_python_filters(self):
        self.assertTrue(bc.linux_wanted("kernel/sched/fair.c"))
        self.assertTrue(bc.linux_wanted("fs/ext4/ext4.h"))
        self.assertFalse(bc.linux_wanted("fs/btrfs/ctree.c"))
        self.assertFalse(bc.linux_wanted("kernel/Makefile"))
        self.assertGreater(bc.hex_fraction("0x00, 0x11, 0x22, 0x33,"), 0.15)
        self.assertLess(bc.hex_fraction("int main(void) { return 0x1; }"), 0.15)
        self.assertTrue(bc.python_wanted("asyncio/base_events.py"))
        for rel in ("test/test_os.py", "idlelib/editor.py", "lib2to3/tests/data/x.py",
                    "_sysconfigdata__x86_64-linux-gnu.py", "json/__init__.pyc"):
            self.assertFalse(bc.python_wanted(rel), rel)
        self.assertEqual(bc.linux_spdx("// SPDX-License-Identifier: GPL-2.0-only\n/*\n"), "GPL-2.0-only")
        self.assertEqual(bc.linux_spdx("/* SPDX-License-Identifier: GPL-2.0 */\n"), "GPL-2.0")
        self.assertIsNone(bc.linux_spdx("// SPDX-License-Identifier: GPL-2.0 OR MIT\n"))
        self.assertTrue(bc.PYTHON_OTHER_LICENCE.match("logging/handlers.py"))
        self.assertTrue(bc.PYTHON_OTHER_LICENCE.match("tarfile.py"))
        self.assertFalse(bc.PYTHON_OTHER_LICENCE.match("shutil.py"))


class Packages(unittest.TestCase):
    def test_missing_package_names_the_apt_line(self):
        versions = dict(bc.EXPECTED_VERSIONS, **{"diatheke": None, "sword-text-web": None})
        with mock.patch.object(bc, "package_versions", return_value=versions), \
                mock.patch.object(bc.shutil, "which", return_value="/usr/bin/dpkg-query"), \
                mock.patch("sys.stderr") as err, self.assertRaises(SystemExit) as cm:
            bc.check_packages()
        self.assertEqual(cm.exception.code, 2)
        said = "".join(c.args[0] for c in err.write.call_args_list)
        self.assertIn("apt-get install --no-install-recommends diatheke sword-text-web", said)

    def test_expected_versions_cover_packages(self):
        self.assertEqual(set(bc.EXPECTED_VERSIONS), set(bc.PACKAGES))
        self.assertLessEqual(set(bc.PYTHON_PACKAGES), set(bc.PACKAGES))


class CommittedHeldout(unittest.TestCase):
    """models/heldout/ is what MANIFEST.json says it is."""
    DIR = REPO / "models" / "heldout"

    def setUp(self):
        self.manifest = json.loads((self.DIR / "MANIFEST.json").read_text(encoding="utf-8"))

    def test_files_match_manifest(self):
        for m in self.manifest:
            data = (self.DIR / m["file"]).read_bytes()
            self.assertEqual(len(data), m["bytes"], m["file"])
            self.assertEqual(hashlib.sha256(data).hexdigest(), m["sha256"], m["file"])
            data.decode("utf-8")
            self.assertEqual(m["file"], bc.heldout_filename(m["source"], m["title"]))
            self.assertEqual(m["package_version"], bc.EXPECTED_VERSIONS[m["package"]], m["file"])
        on_disk = sorted(p.name for p in self.DIR.glob("*.txt"))
        self.assertEqual(on_disk, sorted(m["file"] for m in self.manifest))

    def test_subset_shape(self):
        by_source = {}
        for m in self.manifest:
            by_source.setdefault(m["source"], []).append(m)
            self.assertTrue(bc.is_heldout(m["source"], m["id"].split(":", 1)[1]), m["id"])
        self.assertEqual([m["file"] for m in by_source["austen"]], ["austen--persuasion.txt"])
        for source in ("kjv", "web"):
            self.assertEqual(len(by_source[source]), 2)
            self.assertGreaterEqual(max(m["bytes"] for m in by_source[source]), 100_000)
        for source in ("linux", "python"):
            self.assertEqual(len(by_source[source]), 6)
        for m in self.manifest:   # long enough for 8K-token contexts
            self.assertGreaterEqual(m["bytes"], bc.COMMITTED_MIN_BYTES, m["file"])
        self.assertLess(sum(m["bytes"] for m in self.manifest), 1_700_000)


if __name__ == "__main__":
    unittest.main()
