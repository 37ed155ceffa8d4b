"""Threads against processes for ``moontrek batch``: the same folder of
generated pairs registered with each executor, interleaved, a few rounds.

    python benchmarks/bench_batch.py [--pairs N] [--jobs J] [--rounds R] [--algorithm A]

Prints wall seconds per round and the median ratio (process / thread).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moontrek.batch import find_pairs, run_batch  # noqa: E402
from moontrek.synthetic import encode, make_pair, render_moon  # noqa: E402


def make_folder(folder, count):
    model = render_moon(1000, seed=11)
    sizes = [(900, 1200), (1200, 900), (1000, 1000)]
    for index in range(count):
        pair = make_pair(model, angle=37.0 * index, scale=0.7, user_size=sizes[index % 3])
        (folder / f"p{index:02d}-user.jpg").write_bytes(encode(pair.user, ".jpg", 90))
        (folder / f"p{index:02d}-model.png").write_bytes(encode(pair.model))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algorithm", default="SIFT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp), args.pairs)
        pairs, _ = find_pairs(tmp)
        times = {"thread": [], "process": []}
        for round_ in range(args.rounds):
            for executor in ("thread", "process"):
                started = time.perf_counter()
                records = list(run_batch(pairs, [args.algorithm], jobs=args.jobs, executor=executor))
                elapsed = time.perf_counter() - started
                ok = sum(record["ok"] for record in records)
                times[executor].append(elapsed)
                print(f"round {round_ + 1} {executor:7s} {elapsed:6.2f} s  {ok}/{len(records)} ok", flush=True)
        ratio = statistics.median(p / t for p, t in zip(times["process"], times["thread"]))
        thread, process = statistics.median(times["thread"]), statistics.median(times["process"])
        print(f"{args.pairs} pairs, {args.jobs} jobs, {args.algorithm}: median thread {thread:.2f} s, "
              f"process {process:.2f} s, process/thread {ratio:.2f}")


if __name__ == "__main__":
    main()
