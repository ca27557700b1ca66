#!/usr/bin/env python3
"""ODE-Net classifier on two interleaved spirals, PyTorch + torchdiffeq.

Data: per class c in {0, 1}, n = 1000 points: theta = sqrt(U(0,1)) * 3 pi (about 1.5
turns), r = theta, x = r (cos(theta + c pi), sin(theta + c pi)) / (3 pi) + N(0, 0.02^2)
per coordinate. Training set: 2000 points from numpy default_rng(--seed); test set:
2000 fresh points from default_rng(--seed + 1000).
Network: Linear(2,32) -> tanh -> block -> Linear(32,2), where block is
  ode (default): h(1) of dh/dt = f(h), h(0) = input, f = Linear(32,32) -> tanh ->
    Linear(32,32) (no time input), torchdiffeq odeint dopri5, rtol 1e-3, atol 1e-3,
    backprop through the solver;
  residual (--residual): h + f(h), the same f.
Loss: cross-entropy; Adam (torch defaults), lr 0.01; full batch.
Weights use nn.Linear's default init under torch.manual_seed(--seed).

Prints one JSON line on stdout; progress goes to stderr.
"""
import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchdiffeq
from torch import nn
from torchdiffeq import odeint

torch.set_default_dtype(torch.float64)

WIDTH = 32


def spirals(n_per_class, seed, noise=0.02):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in (0, 1):
        theta = np.sqrt(rng.uniform(0.0, 1.0, n_per_class)) * 3.0 * np.pi
        r = theta
        pts = np.stack([r * np.cos(theta + c * np.pi), r * np.sin(theta + c * np.pi)], axis=1)
        pts = pts / (3.0 * np.pi) + noise * rng.standard_normal(pts.shape)
        xs.append(pts)
        ys.append(np.full(n_per_class, c))
    return torch.tensor(np.concatenate(xs)), torch.tensor(np.concatenate(ys), dtype=torch.long)


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(WIDTH, WIDTH)
        self.l2 = nn.Linear(WIDTH, WIDTH)
        self.nfe = 0

    def forward(self, t, h):
        self.nfe += 1
        return self.l2(torch.tanh(self.l1(h)))


class Net(nn.Module):
    def __init__(self, block, rtol, atol):
        super().__init__()
        self.inp = nn.Linear(2, WIDTH)
        self.field = Field()
        self.out = nn.Linear(WIDTH, 2)
        self.block, self.rtol, self.atol = block, rtol, atol
        self.register_buffer("t", torch.tensor([0.0, 1.0]))

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        if self.block == "ode":
            h = odeint(self.field, h, self.t, rtol=self.rtol, atol=self.atol, method="dopri5")[-1]
        else:
            h = h + self.field(None, h)
        return self.out(h)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--residual", action="store_true", help="replace the ODE block by h + f(h)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-3)
    args = ap.parse_args()
    block = "residual" if args.residual else "ode"

    x_train, y_train = spirals(1000, args.seed)
    x_test, y_test = spirals(1000, args.seed + 1000)

    torch.manual_seed(args.seed)
    net = Net(block, args.rtol, args.atol)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)

    times_ms, losses, nfe_f = [], [], []
    for it in range(args.iters):
        t_start = time.perf_counter()
        opt.zero_grad()
        net.field.nfe = 0
        loss = F.cross_entropy(net(x_train), y_train)
        nfe_f.append(net.field.nfe)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t_start
        if it > 0:
            times_ms.append(dt * 1e3)
        losses.append(loss.item())
        if it % 50 == 0 or it == args.iters - 1:
            print(f"iter {it} loss {loss.item():.5g} nfe {nfe_f[-1]}", file=sys.stderr)

    with torch.no_grad():
        logits = net(x_test)
        test_acc = (logits.argmax(dim=1) == y_test).double().mean().item()
        train_acc = (net(x_train).argmax(dim=1) == y_train).double().mean().item()

    out = {
        "peer": "torch",
        "version": f"torchdiffeq={torchdiffeq.__version__} torch={torch.__version__}",
        "seed": args.seed,
        "block": block,
        "iters": args.iters,
        "ms_per_iter_median": round(statistics.median(times_ms), 4) if times_ms else None,
        # Field calls in the forward pass, mean over iterations (residual: 1).
        "nfe_forward_per_iter": round(statistics.fmean(nfe_f), 2),
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "initial_loss": losses[0],
        "final_loss": losses[-1],  # loss of the last iteration, before its update
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
