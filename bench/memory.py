"""Resident memory of a real training run, epoch by epoch, on texts whose lengths vary widely.

    python bench/memory.py                                  # MiniLM, 5 epochs, 1,500 documents of 5 to 300 tokens
    python bench/memory.py --flags="--epochs 3" --docs 800

Documents are made from the shared SemEval tweets: each joins 1 to 14 tweets (their labels united), so
lengths run from a few tokens to past the 300-token cut. train.py runs in a child process; its resident set
(VmRSS) is read every 0.2 s, and the peak of each epoch (training and validation) is printed when the epoch
ends, with the process's high-water mark (VmHWM).
"""
import argparse
import csv
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWEETS = os.path.join(ROOT, "..", "shared", "data", "semeval2018_ec", "train.tsv")


def write_documents(path: str, n: int, seed: int = 0, max_tweets: int = 14, min_tweets: int = 1) -> None:
    """A tsv of `n` documents, each `min_tweets` to `max_tweets` tweets joined, labelled with the union of their
    labels."""
    with open(TWEETS, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, tweets = rows[0], rows[1:]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        writer.writerow(["id", "text", *header[2:]])
        for i in range(n):
            parts = rng.sample(tweets, rng.randint(min_tweets, max_tweets))
            labels = [max(int(p[j]) for p in parts) for j in range(2, len(header))]
            writer.writerow([f"doc{i}", " ".join(p[1].replace("\t", " ") for p in parts), *labels])


def resident_mb(pid: int) -> dict:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) / 1024
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1500)
    p.add_argument("--flags", default="", help="extra train.py flags")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the child process; repeat")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="memory-bench-")
    data = os.path.join(work, "docs.tsv")
    write_documents(data, args.docs)
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--model", "minilm", "--data", data, "--epochs", "5",
               "--output-dir", os.path.join(work, "run"), "--cache-dir", "", *shlex.split(args.flags)]
    env = dict(os.environ, **dict(item.split("=", 1) for item in args.env))
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = {"VmRSS": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak["VmRSS"] = max(peak["VmRSS"], resident_mb(child.pid)["VmRSS"])
            except (OSError, KeyError):
                pass
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    print(f"{' '.join(shlex.quote(c) for c in command)}\n{args.env}", flush=True)
    for line in child.stdout:
        if line.startswith("epoch "):
            now = resident_mb(child.pid)
            print(f"{line.split('  ')[0]:12s} peak RSS {peak['VmRSS']:7.0f} MB   RSS at its end {now['VmRSS']:7.0f} MB"
                  f"   high-water mark {now['VmHWM']:7.0f} MB   | {line.strip()}", flush=True)
            peak["VmRSS"] = 0.0
        elif line.startswith(("error", "examples", "device")):
            print(line.rstrip(), flush=True)
    done.set()
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
