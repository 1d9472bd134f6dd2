"""unittest runner for the Python tests that ctest runs.

unittest exits 0 when every test it ran was skipped, so ctest would report a
test that checked nothing (not root, a tool missing) as "Passed". main()
exits with SKIP_RETURN_CODE instead, and each ctest entry that runs through
it sets the SKIP_RETURN_CODE property to the same value, so such a run
reads "Skipped" (tests/python/skip_code_test.py checks both).

Exit codes: 0 when everything ran and passed (some skips allowed), 1 on any
failure or error or when nothing ran, SKIP_RETURN_CODE when all was skipped.
"""
import sys
import unittest

# The conventional "skipped" exit status (Automake, ctest examples).
SKIP_RETURN_CODE = 77


def main(argv=None, verbosity=2):
    """unittest.main over the caller's __main__ module, with the exits above."""
    program = unittest.main(module="__main__", argv=argv, verbosity=verbosity,
                            exit=False)
    result = program.result
    if not result.wasSuccessful():
        sys.exit(1)
    skipped = len(result.skipped)
    if skipped > 0 and skipped >= result.testsRun:
        reasons = sorted({reason for _, reason in result.skipped})
        print(f"embsum_unittest: all {result.testsRun} tests skipped "
              f"({'; '.join(reasons)}): exit {SKIP_RETURN_CODE}",
              file=sys.stderr)
        sys.exit(SKIP_RETURN_CODE)
    if result.testsRun == 0:
        print("embsum_unittest: no tests ran", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
