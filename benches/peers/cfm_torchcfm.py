#!/usr/bin/env python3
"""Conditional flow matching with torchcfm (PyTorch), timed per iteration.

The setting of issue 15's torchcfm figures: a 2-D dataset, batch 256, a field
Linear(3, 64) -> tanh -> Linear(64, 64) -> tanh -> Linear(64, 64) -> tanh -> Linear(64, 2)
on [x, t] (torchcfm.models.MLP's shape with tanh for its SELU), Adam (torch defaults)
at --lr, float32, torchcfm's ConditionalFlowMatcher (sigma 0) or, with --ot,
ExactOptimalTransportConditionalFlowMatcher (POT's exact EMD per batch).

Data: --data, a CSV of points (a header line optional) (`cnflow datasets NAME -n 100000 --output F`);
each batch is drawn from it uniformly with replacement; the base points are N(0, I).

Prints one JSON line on stdout (median milliseconds per iteration over windows of
--window iterations, total seconds); progress goes to stderr. Needs
`pip install --no-deps torchcfm` and `pip install pot` beside torch.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn
from torchcfm.conditional_flow_matching import (
    ConditionalFlowMatcher,
    ExactOptimalTransportConditionalFlowMatcher,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ot", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    with open(args.data) as f:
        first = f.readline().split(",")
    try:
        [float(v) for v in first]
        skip = 0
    except ValueError:
        skip = 1  # a header line
    points = torch.tensor(np.loadtxt(args.data, delimiter=",", skiprows=skip), dtype=torch.float32)
    d = points.shape[1]
    width = 64
    model = nn.Sequential(
        nn.Linear(d + 1, width), nn.Tanh(),
        nn.Linear(width, width), nn.Tanh(),
        nn.Linear(width, width), nn.Tanh(),
        nn.Linear(width, d),
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0) if args.ot else ConditionalFlowMatcher(sigma=0.0)

    windows, losses = [], []
    started = time.perf_counter()
    mark = started
    for it in range(1, args.iters + 1):
        opt.zero_grad()
        x1 = points[torch.from_numpy(rng.integers(0, points.shape[0], args.batch))]
        x0 = torch.randn(args.batch, d)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        vt = model(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if it % args.window == 0:
            now = time.perf_counter()
            windows.append(1e3 * (now - mark) / args.window)
            mark = now
            print(f"iter {it} loss {statistics.mean(losses[-args.window:]):.4f} "
                  f"{windows[-1]:.3f} ms/iter", file=sys.stderr)
    total = time.perf_counter() - started
    print(json.dumps({
        "peer": "torchcfm", "objective": "ot-cfm" if args.ot else "cfm", "data": args.data,
        "batch": args.batch, "iters": args.iters, "seed": args.seed,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "ms_per_iter_median": statistics.median(windows), "ms_per_iter_windows": windows,
        "seconds": total, "final_loss": statistics.mean(losses[-args.window:]),
    }))


if __name__ == "__main__":
    main()
