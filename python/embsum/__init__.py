"""embsum: the Python side of the EmbSum scoring service.

  embsum.artifact  write and check model artifacts (docs/design.md section 3)
  embsum.torch     the scoring function (section 2) as a PyTorch module,
                   the learned item keys, and export to an artifact
  embsum.client    a typed gRPC client for Ranker and RankerAdmin

`PYTHONPATH=python` from the repository root is enough to import it.
embsum.client also needs the gRPC stubs generated at build time
(embsum.v1.ranking_pb2, ranking_pb2_grpc). They are found, in this order:
  1. $EMBSUM_PYTHON_STUBS: a directory holding embsum/v1/ranking_pb2.py;
  2. any PYTHONPATH entry holding embsum/v1/ (for example
     build/tools/server/python, as ctest sets it);
  3. build/tools/server/python under the repository root (the default
     build directory of the README).
"""
import os
import pkgutil

# The generated stubs live in another tree (the build directory) under the
# same top-level name: make `embsum` a package spread over several
# directories so `embsum.v1` resolves there.
__path__ = pkgutil.extend_path(__path__, __name__)


def _add_stub_dir():
    def has_stubs(pkg):
        return os.path.isfile(os.path.join(pkg, "v1", "ranking_pb2.py"))

    env = os.environ.get("EMBSUM_PYTHON_STUBS")
    if env:
        pkg = os.path.join(env, "embsum")
        if pkg not in __path__:
            __path__.insert(1, pkg)  # before any PYTHONPATH entry
        return
    if any(has_stubs(p) for p in __path__):
        return
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    pkg = os.path.join(repo, "build", "tools", "server", "python", "embsum")
    if has_stubs(pkg):
        __path__.append(pkg)


_add_stub_dir()
