#!/usr/bin/env python3
"""From a PyTorch model to the service and back: train an EmbSum-style head,
export it, ingest it, serve it, and check that the service's metrics are the
model's.

    PYTHONPATH=python /usr/bin/python3 examples/train_serve_eval.py \\
        --work=/tmp/embsum-example --bin_dir=build

The head (EmbSum, Zhang et al. 2024, section 3; docs/design.md section 2):
  - item content vectors B (n per item): the frozen encoder's output; here
    the CPE of an embsum-datagen artifact stands in for the T5 encoder;
  - user codes A (m per user): poly-attention over the B rows of the items
    in the user's click history, with m learned context codes C and a
    learned output projection V:
        A = softmax(C·Hᵀ / √d) · H · V     (H: the history's item rows);
  - item keys G = gelu(B·W) with a learned W (embsum.torch.ItemKeys);
  - score(u, c) = PolyAttentionScore(A, A, B, G) — the service's function;
  - trained with NCE over each impression's clicked item and K of its
    non-clicked items (softmax cross-entropy, the paper's CTR objective),
    with a learned temperature that scales the logits in the loss only
    (it does not change any ranking, so the served score is the bare one).

Steps: embsum-datagen writes items and MIND-format impressions; the first
80% of impressions train, the last 20% are held out. The untrained head is
scored on the held-out set, then trained for --steps steps, exported with
embsum.torch.export (users' A as upe, B as cpe, G as keys), checked with
embsum.artifact.validate, ingested with embsum-ingest, served by
embsum-server, and evaluated online by embsum-eval (AUC, MRR, nDCG@5/10)
and by embsum.client Rank calls, one per held-out impression. The result
(JSON on stdout and in WORK/result.json) holds both sets of metrics, the
largest relative difference between an online score and the PyTorch score,
and the untrained metrics.

Binaries: --bin_dir (a CMake build directory) or EMBSUM_DATAGEN,
EMBSUM_INGEST, EMBSUM_SERVER, EMBSUM_EVAL.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "python"))

from embsum import artifact  # noqa: E402
from embsum.local import Server  # noqa: E402
from embsum.torch import ItemKeys, PolyAttentionScore, export  # noqa: E402

BINARIES = {"datagen": ("EMBSUM_DATAGEN", "tools/datagen/embsum-datagen"),
            "ingest": ("EMBSUM_INGEST", "tools/ingest/embsum-ingest"),
            "server": ("EMBSUM_SERVER", "tools/server/embsum-server"),
            "eval": ("EMBSUM_EVAL", "tools/eval/embsum-eval")}


def binary(name, bin_dir):
    env, rel = BINARIES[name]
    if bin_dir:
        return os.path.join(bin_dir, rel)
    if os.environ.get(env):
        return os.environ[env]
    sys.exit(f"train_serve_eval: set --bin_dir or {env}")


# -- data -------------------------------------------------------------------

def read_behaviors(path):
    """[(line, user, history ids, candidate ids, labels)] of behaviors.tsv."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            _, user, _, history, shown = line.split("\t")
            cands, labels = [], []
            for entry in shown.split():
                item, label = entry.rsplit("-", 1)
                cands.append(item)
                labels.append(int(label))
            out.append((line, user, history.split(), cands, labels))
    return out


class Data:
    def __init__(self, model_dir, behaviors, max_history):
        with open(os.path.join(model_dir, "items/ids.txt")) as f:
            self.item_ids = f.read().split()
        self.item_row = {i: r for r, i in enumerate(self.item_ids)}
        self.cpe = torch.from_numpy(
            np.load(os.path.join(model_dir, "items/cpe.npy")).astype(
                np.float32))
        # A user's history: every item clicked before, over all their
        # impressions' history columns (an input, never a label), in order.
        history = {}
        for _, user, hist, _, _ in behaviors:
            h = history.setdefault(user, [])
            for item in hist:
                if item not in h:
                    h.append(item)
        self.user_ids = sorted(u for u, h in history.items() if h)
        self.user_row = {u: r for r, u in enumerate(self.user_ids)}
        n_items = max(1, min(max_history, max(len(history[u])
                                              for u in self.user_ids)))
        n, d = self.cpe.shape[1], self.cpe.shape[2]
        # H [U, max_history * n, d] with a mask of the real rows.
        self.history = torch.zeros(len(self.user_ids), n_items * n, d)
        self.mask = torch.zeros(len(self.user_ids), n_items * n,
                                dtype=torch.bool)
        for r, u in enumerate(self.user_ids):
            items = history[u][-n_items:]
            rows = self.cpe[[self.item_row[i] for i in items]].reshape(-1, d)
            self.history[r, :rows.shape[0]] = rows
            self.mask[r, :rows.shape[0]] = True
        # Impressions of users with a history and at least one click and
        # one non-click (the others have no AUC, as in embsum-eval).
        self.impressions = [
            (line, self.user_row[u], [self.item_row[c] for c in cands],
             labels)
            for line, u, _, cands, labels in behaviors
            if u in self.user_row and 0 < sum(labels) < len(labels)]


# -- model ------------------------------------------------------------------

class EmbSumHead(nn.Module):
    """User codes by poly-attention over the history, item keys by W."""

    def __init__(self, dim, user_codes, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.context = nn.Parameter(torch.randn(user_codes, dim, generator=g))
        self.item_keys = ItemKeys(dim)
        with torch.no_grad():
            self.item_keys.weight.copy_(
                torch.randn(dim, dim, generator=g) * dim ** -0.5)
        self.value = nn.Parameter(torch.randn(dim, dim, generator=g) *
                                  dim ** -0.5)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.score = PolyAttentionScore()

    def user_codes(self, history, mask):
        """A [u, m, d] from H [u, h, d] and its mask [u, h]."""
        d = history.shape[-1]
        logits = self.context @ history.transpose(-1, -2) / math.sqrt(d)
        logits = logits.masked_fill(~mask.unsqueeze(-2), float("-inf"))
        return torch.softmax(logits, dim=-1) @ history @ self.value

    def forward(self, history, mask, items):
        """scores [u, c] of users (H, mask) against items B [u, c, n, d]."""
        a = self.user_codes(history, mask)
        g = self.item_keys(items)
        scores, _ = self.score(a, None, items, g)
        return scores


def nce_batch(data, impressions, negatives, rng):
    """(user rows, candidate item rows [b, 1 + K]): each clicked item with K
    of the impression's non-clicked items (drawn with replacement)."""
    users, cands = [], []
    for _, u, items, labels in impressions:
        pos = [i for i, l in zip(items, labels) if l]
        neg = [i for i, l in zip(items, labels) if not l]
        for p in pos:
            users.append(u)
            cands.append([p] + list(rng.choice(neg, size=negatives)))
    return torch.tensor(users), torch.tensor(cands)


def train(model, data, train_set, steps, batch, negatives, lr, seed):
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_f = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        pick = rng.choice(len(train_set), size=batch, replace=False)
        users, cands = nce_batch(data, [train_set[i] for i in pick],
                                 negatives, rng)
        scores = model(data.history[users], data.mask[users],
                       data.cpe[cands])
        logits = scores * model.log_temperature.exp()
        loss = loss_f(logits, torch.zeros(len(users), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


# -- metrics (MIND's definitions, as loadgen/ranking_metrics.cc) -----------

def auc(scores, labels):
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    pos_rank_sum, pos = 0.0, 0
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and scores[order[j]] == scores[order[i]]:
            j += 1
        avg = 0.5 * (i + 1 + j)
        for t in range(i, j):
            if labels[order[t]] > 0:
                pos_rank_sum += avg
                pos += 1
        i = j
    neg = len(scores) - pos
    return (pos_rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def _rank_order(scores):  # score descending, ties in impression order
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def mrr(scores, labels):
    order = _rank_order(scores)
    rr = sum(labels[o] / (k + 1) for k, o in enumerate(order))
    return rr / sum(labels)


def ndcg(scores, labels, k):
    def dcg(order):
        return sum((2 ** labels[o] - 1) / math.log2(r + 2)
                   for r, o in enumerate(order[:k]))
    ideal = sorted(range(len(labels)), key=lambda i: -labels[i])
    return dcg(_rank_order(scores)) / dcg(ideal)


def metrics(score_lists, label_lists):
    rows = [(auc(s, l), mrr(s, l), ndcg(s, l, 5), ndcg(s, l, 10))
            for s, l in zip(score_lists, label_lists)]
    mean = np.mean(np.array(rows, dtype=np.float64), axis=0)
    return dict(zip(("auc", "mrr", "ndcg5", "ndcg10"), map(float, mean)))


@torch.no_grad()
def offline_scores(model, data, impressions, dtype=torch.float64):
    """PyTorch scores of each impression's candidates, from the tensors the
    export writes (fp32), computed in `dtype`; and each score's magnitude,
    the size of the terms it sums (tests/scoring/scoring_test_util.h):
    Σ_ij w_ij · max(|K_ij|, sqrt(Σ_k (a_ik b_jk)²)). Scores are weighted
    sums of dot products that may cancel to near 0, so an fp32 score's
    error is measured relative to max(|score|, magnitude)."""
    a = model.user_codes(data.history, data.mask).to(torch.float32)
    g = model.item_keys(data.cpe).to(torch.float32)
    scores, magnitudes = [], []
    for _, u, items, _ in impressions:
        au, b, gi = a[u].to(dtype), data.cpe[items].to(dtype), \
            g[items].to(dtype)
        s, _ = model.score(au, None, b, gi)
        k = au @ b.transpose(-1, -2)  # [c, m, n]
        w = torch.softmax((au @ gi.transpose(-1, -2)).flatten(-2), -1)
        rss = torch.sqrt((au * au) @ (b * b).transpose(-1, -2))
        mag = (w * torch.maximum(k.abs(), rss).flatten(-2)).sum(-1)
        scores.append([float(x) for x in s])
        magnitudes.append([float(x) for x in mag])
    return scores, magnitudes


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", required=True, help="working directory")
    p.add_argument("--bin_dir", help="CMake build directory")
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--user_codes", type=int, default=4)
    p.add_argument("--item_codes", type=int, default=2)
    p.add_argument("--impressions", type=int, default=3000)
    p.add_argument("--impression_size", type=int, default=10)
    p.add_argument("--max_history", type=int, default=30)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--negatives", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads (the model is small: more threads "
                        "only add OpenMP overhead on a busy machine)")
    p.add_argument("--dtype", default="float32",
                   help="export dtype (float16 halves the artifact)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, args.threads))
    t0 = time.monotonic()
    os.makedirs(args.work, exist_ok=True)
    gen = os.path.join(args.work, "datagen")
    if not os.path.exists(os.path.join(gen, "behaviors.tsv")):
        subprocess.run(
            [binary("datagen", args.bin_dir), f"--out={gen}",
             f"--users={args.users}", f"--items={args.items}",
             f"--dim={args.dim}", f"--user_codes={args.user_codes}",
             f"--item_codes={args.item_codes}", f"--seed={args.seed}",
             f"--impressions={args.impressions}",
             f"--impression_size={args.impression_size}",
             "--model_version=datagen"], check=True, capture_output=True)
    behaviors = read_behaviors(os.path.join(gen, "behaviors.tsv"))
    data = Data(gen, behaviors, args.max_history)
    split = int(0.8 * len(data.impressions))
    train_set, test_set = data.impressions[:split], data.impressions[split:]
    labels = [l for _, _, _, l in test_set]

    model = EmbSumHead(args.dim, args.user_codes, args.seed)
    untrained = metrics(offline_scores(model, data, test_set)[0], labels)
    losses = train(model, data, train_set, args.steps, args.batch,
                   args.negatives, args.lr, args.seed)
    offline, magnitudes = offline_scores(model, data, test_set)
    trained = metrics(offline, labels)

    # Export: A as the users' upe (Q = A), B as cpe, G = gelu(B·W) as keys.
    model_dir = os.path.join(args.work, "model")
    with torch.no_grad():
        upe = model.user_codes(data.history, data.mask)
    export(model_dir, model_version=f"example-{args.seed}",
           user_ids=data.user_ids, upe=upe, item_ids=data.item_ids,
           cpe=data.cpe, item_keys=model.item_keys, dtype=args.dtype,
           overwrite=True)
    artifact.validate(model_dir)
    data_dir = os.path.join(args.work, "data")
    subprocess.run([binary("ingest", args.bin_dir), f"--model_dir={model_dir}",
                    f"--data_dir={data_dir}", "--force"], check=True,
                   capture_output=True)
    test_tsv = os.path.join(args.work, "heldout.tsv")
    with open(test_tsv, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line, _, _, _ in test_set)

    with Server(binary("server", args.bin_dir), data_dir) as server:
        eval_json = os.path.join(args.work, "online.json")
        subprocess.run([binary("eval", args.bin_dir),
                        f"--target={server.listen}",
                        f"--behaviors={test_tsv}", f"--json={eval_json}",
                        "--concurrency=2"], check=True, capture_output=True)
        with open(eval_json) as f:
            online_eval = json.load(f)
        ranker = server.ranker()
        worst = worst_plain = 0.0
        online_scores = []
        for (_, u, items, _), ref, mag in zip(test_set, offline,
                                              magnitudes):
            ids = [data.item_ids[i] for i in items]
            got = {i: s for i, s, _ in ranker.rank(data.user_ids[u], ids,
                                                   explain=False)}
            online_scores.append([got[i] for i in ids])
            for i, r, m in zip(ids, ref, mag):
                worst = max(worst, abs(got[i] - r) / max(abs(r), m))
                worst_plain = max(worst_plain,
                                  abs(got[i] - r) / max(abs(r), 1e-30))
        served = ranker.info()
    online_client = metrics(online_scores, labels)
    result = {
        "untrained": untrained,
        "offline": trained,
        "online_eval": {k: online_eval[k] for k in
                        ("auc", "mrr", "ndcg5", "ndcg10", "evaluated",
                         "skipped_unknown_user", "unknown_items")},
        "online_client": online_client,
        # |online - PyTorch| / max(|PyTorch|, magnitude), the largest.
        "max_relative_score_difference": worst,
        # |online - PyTorch| / |PyTorch|: large only where a score is near 0.
        "max_plain_relative_score_difference": worst_plain,
        "heldout_impressions": len(test_set),
        "train_impressions": len(train_set),
        "first_loss": losses[0], "last_loss": float(np.mean(losses[-20:])),
        "served": served,
        "seconds": time.monotonic() - t0,
    }
    with open(os.path.join(args.work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
