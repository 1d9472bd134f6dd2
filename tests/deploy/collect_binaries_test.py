"""Runs deploy/docker/collect-binaries.sh (the Dockerfile's step that fills
/opt/embsum) on fake build trees: executables and shared libraries land where
the runtime images expect them, glibc and excluded libraries stay out, and
every failure names its cause."""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import unittest

import deploy_testlib as lib

SCRIPT = lib.ROOT / "deploy" / "docker" / "collect-binaries.sh"
CC = shutil.which("cc") or shutil.which("gcc")


def run(*args):
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


class CollectBinariesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="collect_binaries_test."))
        self.build = self.tmp / "build"
        self.out = self.tmp / "out"
        # A dynamically linked program with a private library next to it
        # (found through its rpath), built from two tiny C files.
        lib_dir = self.tmp / "libdir"
        lib_dir.mkdir()
        (self.tmp / "demo.c").write_text("int demo(void) { return 7; }\n")
        (self.tmp / "main.c").write_text("int demo(void);\nint main(void) { return demo() - 7; }\n")
        self.check([CC, "-shared", "-fPIC", "-Wl,-soname,libembsumdemo.so.1", "-o",
                    str(lib_dir / "libembsumdemo.so.1"), str(self.tmp / "demo.c")])
        self.program = self.tmp / "program"
        self.check([CC, "-o", str(self.program), str(self.tmp / "main.c"),
                    str(lib_dir / "libembsumdemo.so.1"), f"-Wl,-rpath,{lib_dir}"])
        self.lib_dir = lib_dir

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def check(self, command):
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def put(self, relative, source=None, mode=0o755):
        path = self.build / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source or self.program, path)
        os.chmod(path, mode)
        return path

    def standard_tree(self):
        self.put("tools/server/embsum-server")
        self.put("tools/ingest/embsum-ingest")
        self.put("benchmarks/embsum-bench-scoring")
        self.put("CMakeFiles/embsum-server.dir/embsum-stale")  # CMake's own files
        self.put("tools/server/embsum-notes.txt", mode=0o644)  # not executable
        self.put("tests/scorer_test")                          # not embsum-*

    def test_copies_the_executables_only(self):
        self.standard_tree()
        result = run(f"--build_dir={self.build}", f"--out={self.out}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(p.name for p in (self.out / "bin").iterdir()),
                         ["embsum-bench-scoring", "embsum-ingest", "embsum-server"])
        self.assertFalse((self.out / "lib").exists(), "no --libs, no lib/")
        self.assertEqual(subprocess.run([str(self.out / "bin" / "embsum-server")]).returncode, 0)

    def test_libs_copies_dependencies_under_their_soname_without_glibc(self):
        self.standard_tree()
        result = run(f"--build_dir={self.build}", f"--out={self.out}", "--libs", "--strip")
        self.assertEqual(result.returncode, 0, result.stderr)
        libs = sorted(p.name for p in (self.out / "lib").iterdir())
        self.assertIn("libembsumdemo.so.1", libs)
        self.assertFalse([l for l in libs if l.startswith(("libc.so", "ld-linux", "libm.so"))],
                         libs)
        # The copy works without the original: the runtime image has no build tree.
        shutil.rmtree(self.lib_dir)
        env = dict(os.environ, LD_LIBRARY_PATH=str(self.out / "lib"))
        self.assertEqual(subprocess.run([str(self.out / "bin" / "embsum-server")],
                                        env=env).returncode, 0)

    def test_exclude_lib_leaves_base_image_libraries_out(self):
        self.standard_tree()
        result = run(f"--build_dir={self.build}", f"--out={self.out}", "--libs",
                     "--exclude_lib=^libembsumdemo\\.so")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("libembsumdemo.so.1", [p.name for p in (self.out / "lib").iterdir()])

    def test_unresolvable_library_fails_naming_it(self):
        self.standard_tree()
        shutil.rmtree(self.lib_dir)
        result = run(f"--build_dir={self.build}", f"--out={self.out}", "--libs")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("cannot resolve libembsumdemo.so.1", result.stderr)

    def test_missing_server_or_ingest_fails(self):
        self.put("tools/ingest/embsum-ingest")
        result = run(f"--build_dir={self.build}", f"--out={self.out}")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("no embsum-server executable", result.stderr)

    def test_two_executables_with_one_name_fail(self):
        self.standard_tree()
        self.put("other/embsum-server")
        result = run(f"--build_dir={self.build}", f"--out={self.out}")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("two executables named embsum-server", result.stderr)

    def test_bad_arguments_fail(self):
        self.assertIn("unknown argument '--bogus'", run("--bogus").stderr)
        self.assertIn("required", run(f"--out={self.out}").stderr)
        self.assertIn("not a directory", run(f"--build_dir={self.tmp}/none", f"--out={self.out}").stderr)


GLIBC = re.compile(r"^(libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libmvec|libnsl)\.so")


class RealBuildTest(unittest.TestCase):
    """What the GPU runtime stage does, on this machine's real build: collect
    the executables with --libs, then run them in a root file system holding
    nothing but glibc and the collected files (ld.so.conf.d + ldconfig, as
    the Dockerfile)."""

    def test_executables_run_on_glibc_and_the_collected_libraries_alone(self):
        if not lib.OPTIONS.build_dir:
            self.skipTest("no --build_dir with embsum-server and embsum-ingest")
        if os.geteuid() != 0:
            self.skipTest("chroot needs root")
        root = pathlib.Path(tempfile.mkdtemp(prefix="collect_binaries_root."))
        self.addCleanup(shutil.rmtree, root)
        result = run(f"--build_dir={lib.OPTIONS.build_dir}", f"--out={root}/opt/embsum",
                     "--libs")
        self.assertEqual(result.returncode, 0, result.stderr)
        for exe in (root / "opt/embsum/bin").iterdir():
            for line in subprocess.run(["ldd", str(exe)], capture_output=True, text=True,
                                       check=True).stdout.splitlines():
                words = line.split()
                path = words[2] if "=>" in words else words[0]
                if (GLIBC.match(words[0]) or "ld-linux" in words[0]) and path.startswith("/"):
                    target = root / path.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target)
        (root / "etc/ld.so.conf.d").mkdir(parents=True)
        (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
        (root / "etc/ld.so.conf.d/embsum.conf").write_text("/opt/embsum/lib\n")
        subprocess.run(["ldconfig", "-r", str(root)], check=True, capture_output=True)
        for name in ("embsum-server", "embsum-ingest"):
            result = subprocess.run(["chroot", str(root), f"/opt/embsum/bin/{name}", "--helpfull"],
                                    capture_output=True, text=True, timeout=60)
            self.assertIn("--data_dir", result.stdout + result.stderr,
                          f"{name} does not start with only the collected libraries:\n"
                          f"{result.stderr[-2000:]}")


if __name__ == "__main__":
    if CC is None:
        raise SystemExit("collect_binaries_test: no C compiler (cc) on PATH")
    lib.main()
