"""embsum_unittest.main's exit codes: 0 when tests ran and passed (skips
allowed), SKIP_RETURN_CODE when everything was skipped (per test or by
setUpClass), 1 on a failure or when nothing ran."""
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import embsum_unittest  # noqa: E402

CASES = {
    "all_skipped": ("""
        class T(unittest.TestCase):
            def test_a(self): self.skipTest("needs root")
            def test_b(self): self.skipTest("no kubectl")
        """, embsum_unittest.SKIP_RETURN_CODE),
    "class_skipped": ("""
        class T(unittest.TestCase):
            @classmethod
            def setUpClass(cls): raise unittest.SkipTest("no openssl")
            def test_a(self): pass
        """, embsum_unittest.SKIP_RETURN_CODE),
    "some_skipped": ("""
        class T(unittest.TestCase):
            def test_a(self): self.skipTest("needs root")
            def test_b(self): self.assertEqual(1, 1)
        """, 0),
    "skip_and_failure": ("""
        class T(unittest.TestCase):
            def test_a(self): self.skipTest("needs root")
            def test_b(self): self.assertEqual(1, 2)
        """, 1),
    "nothing_ran": ("""
        class T(unittest.TestCase):
            pass
        """, 1),
}


class ExitCodeTest(unittest.TestCase):
    def run_case(self, body):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "case_test.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write("import sys\nimport unittest\n")
                f.write(f"sys.path.insert(0, {HERE!r})\n")
                f.write("import embsum_unittest\n")
                f.write(textwrap.dedent(body))
                f.write("\nembsum_unittest.main()\n")
            return subprocess.run([sys.executable, path], capture_output=True,
                                  text=True, timeout=60)

    def test_exit_codes(self):
        for name, (body, want) in CASES.items():
            with self.subTest(name):
                run = self.run_case(body)
                self.assertEqual(run.returncode, want, run.stderr)
                if want == embsum_unittest.SKIP_RETURN_CODE:
                    self.assertIn("tests skipped", run.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
