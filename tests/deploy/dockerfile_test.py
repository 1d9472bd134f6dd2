"""Checks the top-level Dockerfile without a Docker engine: the CPU image
installs exactly tools/setup.sh's packages (by running it) and builds with
the README's recipe, the GPU builder's package list agrees with setup.sh up
to the listed, reasoned differences, FAISS is pinned and built with GPU
support, runtime stages run embsum-server as a non-root user on the server's
ports, and every file the Dockerfile uses exists in the build context."""
import fnmatch
import re
import shlex
import subprocess
import unittest

import deploy_testlib as lib

DOCKERFILE = lib.ROOT / "Dockerfile"
DOCKERIGNORE = lib.ROOT / ".dockerignore"
SETUP = lib.ROOT / "tools" / "setup.sh"
COLLECT = lib.ROOT / "deploy" / "docker" / "collect-binaries.sh"

# tools/setup.sh packages the GPU builder does not install, and why.
GPU_LEFT_OUT = {
    "libfaiss-dev": "CPU-only FAISS; the builder compiles FAISS with GPU support",
    "civetweb": "the civetweb command-line server; the service links libcivetweb-dev",
    "prometheus": "promtool, for tests only; the GPU image runs no tests",
    "haproxy": "the sharded-cluster proxy, for tests and embsum-local-cluster only",
    "nats-server": "the write log's NATS server, for tests and embsum-local-cluster only "
                   "(a deployment runs its own NATS cluster)",
    "python3": "tests and tools only",
    "python3-grpcio": "tests and tools only",
    "python3-protobuf": "tests and tools only",
    "python3-numpy": "tests and tools only",
    "python3-yaml": "tests only",
    "clang": "sanitizer and clang-tidy builds only",
    "libclang-rt-14-dev": "sanitizer builds only",
    "libomp-dev": "OpenMP for clang (the fuzz build) only; gcc ships its own",
    "grpc-proto": "health and reflection .proto files for the tests' clients only",
    "python3-torch": "the PyTorch score, the example and the peer benchmark: tools and "
                     "tests only",
}
# Packages the GPU builder adds, and why.
GPU_EXTRA = {
    "ca-certificates": "git clone of FAISS over HTTPS",
}
UNPRIVILEGED_UID = "10001"


class Instruction:
    def __init__(self, keyword, args, line):
        self.keyword, self.args, self.line = keyword, args, line

    def __repr__(self):
        return f"Dockerfile:{self.line}: {self.keyword} {self.args}"


def parse_dockerfile(text):
    """(global ARG defaults, [(stage name, base image, [Instruction])])."""
    instructions, current, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        current = ""
    global_args, stages = {}, []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append((name, image, []))
        elif not stages:
            if ins.keyword != "ARG":
                raise AssertionError(f"{ins}: only ARG may come before the first FROM")
            key, _, value = ins.args.partition("=")
            global_args[key] = value.strip('"')
        else:
            stages[-1][2].append(ins)
    return global_args, stages


def setup_packages():
    script = f'eval "$(sed -n "/^PACKAGES=(/,/^)/p" {shlex.quote(str(SETUP))})"; ' \
             'printf "%s\\n" "${PACKAGES[@]}"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return result.stdout.split()


def apt_installs(command):
    """Packages of each `apt-get install` in a shell command."""
    packages = []
    for part in re.split(r"&&|;|\|\|", command):
        words = part.split()
        if "install" in words and words and words[0] in ("apt-get", "apt"):
            packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


def ignored(path, patterns):
    """Whether .dockerignore patterns (top-level or **/ prefixed) exclude path."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(p, pattern[3:]) for p in parts):
                return True
        elif any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            return True
    return False


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.global_args, stage_list = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
        cls.order = [name for name, _, _ in stage_list]
        cls.stages = {name: (image, ins) for name, image, ins in stage_list}
        cls.ignore = [l.strip() for l in DOCKERIGNORE.read_text().splitlines()
                      if l.strip() and not l.startswith("#")]

    def runs(self, stage):
        return [i.args for i in self.stages[stage][1] if i.keyword == "RUN"]

    def one(self, stage, keyword):
        found = [i for i in self.stages[stage][1] if i.keyword == keyword]
        self.assertEqual(len(found), 1, f"stage {stage}: {len(found)} {keyword}")
        return found[0].args

    def test_stages(self):
        self.assertEqual(self.order, ["gpu-build", "gpu", "cpu-base", "cpu-build", "cpu"])
        self.assertEqual(self.order[-1], "cpu", "the default target is the CPU image")

    def test_cpu_image_installs_exactly_the_setup_packages(self):
        image, _ = self.stages["cpu-base"]
        self.assertEqual(image, "debian:12", "the README's set-up targets Debian 12")
        copy = self.one("cpu-base", "COPY").split()
        self.assertEqual(copy[0], "tools/setup.sh")
        (run,) = self.runs("cpu-base")
        self.assertTrue(run.startswith(copy[1] + " "), f"cpu-base does not run {copy[1]}: {run}")
        for stage in ("cpu-base", "cpu-build", "cpu"):
            for command in self.runs(stage):
                self.assertEqual(apt_installs(command), [],
                                 f"stage {stage} installs packages beyond tools/setup.sh")
                self.assertNotIn("dpkg -i", command, stage)
        for stage in ("cpu-build", "cpu"):
            base = re.match(r"(\S+)", self.stages[stage][0]).group(1)
            self.assertIn(base, ("cpu-base", "cpu-build"), f"{stage} is not built on cpu-base")
        self.assertIn('"${missing[@]}"', SETUP.read_text(), "setup.sh installs its PACKAGES")

    def test_cpu_build_uses_the_readme_recipe(self):
        runs = " ".join(self.runs("cpu-build"))
        self.assertIn("./tools/test.sh", runs)
        test_sh = (lib.ROOT / "tools" / "test.sh").read_text()
        configure = re.search(r"cmake -S \. -B \S+ (.*)", test_sh).group(1)
        self.assertIn(configure, runs, "the no-test build configures unlike tools/test.sh")

    def test_gpu_builder_packages_agree_with_setup(self):
        setup = setup_packages()
        self.assertGreater(len(setup), 10)
        self.assertLessEqual(set(GPU_LEFT_OUT), set(setup), "GPU_LEFT_OUT names a package "
                             "tools/setup.sh no longer has: drop it from the list")
        gpu = [p for run in self.runs("gpu-build") for p in apt_installs(run)]
        self.assertEqual(len(gpu), len(set(gpu)), "duplicate packages")
        expected = (set(setup) - set(GPU_LEFT_OUT)) | set(GPU_EXTRA)
        self.assertEqual(set(gpu) - expected, set(),
                         "GPU builder installs packages that are neither in tools/setup.sh "
                         "nor in GPU_EXTRA")
        self.assertEqual(expected - set(gpu), set(),
                         "tools/setup.sh packages missing from the GPU builder (add them there "
                         "or to GPU_LEFT_OUT with the reason)")

    def test_gpu_images_pair_cuda_devel_and_runtime(self):
        devel = re.fullmatch(r"nvidia/cuda:([\d.]+)-devel-(ubuntu[\d.]+)", self.stages["gpu-build"][0])
        runtime = re.fullmatch(r"nvidia/cuda:([\d.]+)-runtime-(ubuntu[\d.]+)", self.stages["gpu"][0])
        self.assertTrue(devel and runtime, (self.stages["gpu-build"][0], self.stages["gpu"][0]))
        self.assertEqual(devel.groups(), runtime.groups(), "same CUDA and Ubuntu versions")

    def test_faiss_is_a_pinned_release_with_gpu_support(self):
        args = [i.args for i in self.stages["gpu-build"][1] if i.keyword == "ARG"]
        version = next(a.split("=", 1)[1] for a in args if a.startswith("FAISS_VERSION="))
        self.assertRegex(version, r"^\d+\.\d+\.\d+$")
        runs = " ".join(self.runs("gpu-build"))
        self.assertIn('--branch "v${FAISS_VERSION}"', runs)
        for flag in ("-DFAISS_ENABLE_GPU=ON", "-DFAISS_ENABLE_PYTHON=OFF", "-DBUILD_TESTING=OFF",
                     "-DBUILD_SHARED_LIBS=ON"):
            self.assertIn(flag, runs)
        self.assertIn("-DEMBSUM_CUDA=ON", runs, "the service is built with the CUDA scorer")

    def test_runtime_stages_run_the_server_unprivileged(self):
        flags, source = lib.server_flags()
        ports = {lib.port_of(flags["listen"]), lib.port_of(flags["metrics_listen"])}
        for stage, backend in (("cpu", "cpu"), ("gpu", "cuda")):
            self.assertEqual(self.one(stage, "USER"), f"{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}")
            self.assertEqual(self.one(stage, "ENTRYPOINT"), '["embsum-server"]')
            self.assertEqual({int(p) for p in self.one(stage, "EXPOSE").split()}, ports,
                             f"{stage}: EXPOSE vs the server's ports ({source})")
            cmd = [w.strip('"') for w in self.one(stage, "CMD").strip("[]").split(", ")]
            values = lib.flag_args(cmd)
            for name in values:
                self.assertIn(name, flags, f"{stage}: embsum-server has no --{name} ({source})")
            self.assertEqual(values.get("backend"), backend, stage)
            copies = [i.args for i in self.stages[stage][1] if i.keyword == "COPY"]
            self.assertTrue(all(c.startswith("--from=") for c in copies),
                            f"{stage}: runtime copies only from build stages")
            for copy in copies:
                source_stage = copy.split()[0].split("=", 1)[1]
                self.assertLess(self.order.index(source_stage), self.order.index(stage))

    def test_copied_and_run_files_exist_in_the_build_context(self):
        for stage, (_, instructions) in self.stages.items():
            for ins in instructions:
                if ins.keyword in ("COPY", "ADD") and not ins.args.startswith("--from="):
                    for source in ins.args.split()[:-1]:
                        if source == ".":
                            continue
                        self.assertTrue((lib.ROOT / source).exists(), f"{ins}: {source} missing")
                        self.assertFalse(ignored(source, self.ignore),
                                         f"{ins}: .dockerignore excludes {source}")
        for script in ("tools/setup.sh", "tools/test.sh", "deploy/docker/collect-binaries.sh"):
            path = lib.ROOT / script
            self.assertIn(script.split("/")[-1], DOCKERFILE.read_text())
            self.assertTrue(path.is_file() and path.stat().st_mode & 0o111, f"{script}: not executable")
            self.assertFalse(ignored(script, self.ignore), script)

    def test_collect_binaries_options_exist(self):
        accepted = set(re.findall(r"^\s*(--[a-z_]+)(?:=\*)?\)", COLLECT.read_text(), re.M))
        self.assertGreaterEqual(accepted, {"--build_dir", "--out", "--libs", "--strip"})
        calls = [r for s in self.order for r in self.runs(s) if "collect-binaries.sh" in r]
        self.assertEqual(len(calls), 2)
        for call in calls:
            words = shlex.split(call.split("collect-binaries.sh", 1)[1].split("&&")[0])
            for word in words:
                self.assertIn(word.split("=", 1)[0], accepted, call)

    def test_dockerignore_keeps_build_trees_and_git_out(self):
        for path in (".git/HEAD", "build/CMakeCache.txt", "build-deploy/x", "build_asan/x",
                     "tools/__pycache__/x.pyc"):
            self.assertTrue(ignored(path, self.ignore), path)
        for path in ("CMakeLists.txt", "tools/setup.sh", "server/app.cc", "deploy/k8s/cpu"):
            self.assertFalse(ignored(path, self.ignore), path)


if __name__ == "__main__":
    lib.main()
