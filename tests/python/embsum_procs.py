"""Real processes for the tests of python/embsum: embsum-datagen,
embsum-ingest and embsum-server as children on loopback.

The server is synchronised on events, never on sleeps: its log is read line
by line from a pipe until the `event=start` line gives the bound ports, then
grpc.health.v1 is asked (with wait_for_ready) until it says SERVING. stop()
sends SIGTERM and waits for the exit.

Binaries come from the environment ctest sets: EMBSUM_SERVER, EMBSUM_INGEST,
EMBSUM_DATAGEN, EMBSUM_EVAL.
"""
import os
import subprocess

from embsum import local

SERVER = os.environ.get("EMBSUM_SERVER", "")
INGEST = os.environ.get("EMBSUM_INGEST", "")
DATAGEN = os.environ.get("EMBSUM_DATAGEN", "")
EVAL = os.environ.get("EMBSUM_EVAL", "")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def datagen(out, users, items, dim=8, user_codes=2, item_codes=2, seed=1,
            impressions=10, impression_size=4, extra=()):
    subprocess.run([DATAGEN, f"--out={out}", f"--users={users}",
                    f"--items={items}", f"--dim={dim}",
                    f"--user_codes={user_codes}",
                    f"--item_codes={item_codes}", f"--seed={seed}",
                    f"--impressions={impressions}",
                    f"--impression_size={impression_size}", *extra],
                   check=True, capture_output=True, timeout=120)
    return out


def ingest(model, data, extra=(), check=True):
    p = subprocess.run([INGEST, f"--model_dir={model}", f"--data_dir={data}",
                        *extra], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise RuntimeError(f"embsum-ingest failed: {p.stderr}")
    return p


def Server(data_dir, extra=(), start_timeout=120, tls=None):
    """embsum.local.Server of EMBSUM_SERVER."""
    return local.Server(SERVER, data_dir, extra, start_timeout, tls)
