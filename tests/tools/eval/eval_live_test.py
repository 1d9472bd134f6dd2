"""embsum-eval against a live embsum-server on a generated model: the planted
topic structure must show (AUC >= 0.85), and shuffled labels must not
(AUC near 0.5).

usage: eval_live_test.py EVAL SERVER DATAGEN INGEST
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "loadgen"))
import tooltest as t  # noqa: E402


def main():
    evaluate, server, datagen, ingest = sys.argv[1:5]
    tools = {"server": server, "datagen": datagen, "ingest": ingest}
    with t.workdir() as work, t.live_server(tools, work, impressions=600) as (address, model):
        behaviors = os.path.join(model, "behaviors.tsv")
        common = [evaluate, "--target=" + address, "--behaviors=" + behaviors,
                  "--connect_timeout=60", "--limit=500"]
        real = os.path.join(work, "real.json")
        p = t.run(common + ["--json=" + real])
        for name in ("AUC:", "MRR:", "nDCG@5:", "nDCG@10:"):
            t.check(name in p.stdout, "no %s line in the output" % name)
        with open(real) as f:
            metrics = json.load(f)
        t.check(metrics["evaluated"] == 500, "evaluated %r of 500" % metrics["evaluated"])
        t.check(metrics["auc"] >= 0.85, "AUC %.4f < 0.85 on planted structure" % metrics["auc"])
        t.check(0 < metrics["mrr"] <= 1 and 0 < metrics["ndcg10"] <= 1, "metrics %r" % metrics)

        shuffled = os.path.join(work, "shuffled.json")
        t.run(common + ["--shuffle_labels", "--seed=7", "--json=" + shuffled])
        with open(shuffled) as f:
            control = json.load(f)
        t.check(abs(control["auc"] - 0.5) <= 0.07,
                "shuffled-label AUC %.4f is not near 0.5" % control["auc"])
        t.check(control["ndcg10"] < metrics["ndcg10"], "shuffled nDCG@10 not lower")

        # --retrieval: the default Retrieve against exact=true on the same
        # server (the recall tuner ran at start-up).
        retrieval = os.path.join(work, "retrieval.json")
        p = t.run(common + ["--retrieval", "--retrieval_users=20", "--json=" + retrieval])
        t.check("recall@10:" in p.stdout and "recall@100:" in p.stdout,
                "no recall lines in %r" % p.stdout)
        with open(retrieval) as f:
            r = json.load(f)
        t.check(r["users"] == 20, "evaluated %r of 20 users" % r["users"])
        t.check(r["recall"]["10"] >= 0.9 and r["recall"]["100"] >= 0.9,
                "Retrieve recall %r" % r["recall"])
        t.check(r["exact_scored_items"] == r["catalogue_items"] > 0,
                "exact scored %r of %r items" % (r["exact_scored_items"], r["catalogue_items"]))
        t.check(r["exact_latency_seconds"]["mean"] > 0, "no latency %r" % r)
        p = t.run(common + ["--retrieval", "--retrieval_k=100,10"], expect_rc=2)
        t.check("ascending" in p.stderr, "bad --retrieval_k not reported: %r" % p.stderr)

        # A missing file is reported with its name and exit status 1.
        p = t.run([evaluate, "--target=" + address, "--behaviors=" + behaviors + ".missing"],
                  expect_rc=1)
        t.check("behaviors.tsv.missing" in p.stderr, "error does not name the file")
    print("PASS")


if __name__ == "__main__":
    main()
