"""Every ctest entry that runs a Python script using embsum_unittest has
SKIP_RETURN_CODE set to embsum_unittest.SKIP_RETURN_CODE, so a run that
skipped everything reads "Skipped" in ctest, not "Passed".
Usage: skip_code_test.py CTEST BUILD_DIR"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import embsum_unittest  # noqa: E402


def main():
    ctest, build = sys.argv[1], sys.argv[2]
    listing = subprocess.run([ctest, "--show-only=json-v1", "--test-dir", build],
                             capture_output=True, text=True, timeout=120,
                             check=True)
    tests = json.loads(listing.stdout)["tests"]
    checked, missing = 0, []
    for test in tests:
        scripts = [a for a in test.get("command", []) if a.endswith(".py")]
        uses_runner = False
        for script in scripts:
            if os.path.dirname(os.path.abspath(script)) == HERE:
                continue  # this folder's own checks run plain unittest
            try:
                with open(script, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if "embsum_unittest.main(" in text or "lib.main()" in text:
                uses_runner = True
        if not uses_runner:
            continue
        checked += 1
        props = {p["name"]: p["value"] for p in test.get("properties", [])}
        if props.get("SKIP_RETURN_CODE") != embsum_unittest.SKIP_RETURN_CODE:
            missing.append(f"{test['name']} (SKIP_RETURN_CODE "
                           f"{props.get('SKIP_RETURN_CODE')!r})")
    if checked == 0:
        sys.exit("skip_code_test: found no Python test entries to check")
    if missing:
        sys.exit("ctest entries running embsum_unittest without "
                 f"SKIP_RETURN_CODE {embsum_unittest.SKIP_RETURN_CODE}:\n  " +
                 "\n  ".join(missing))
    print(f"skip_code_test: {checked} entries carry SKIP_RETURN_CODE")


if __name__ == "__main__":
    main()
