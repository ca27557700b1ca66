#!/usr/bin/env python3
"""Spiral neural-ODE demo (the DiffEqFlux / torchdiffeq "ODE demo") in PyTorch + torchdiffeq.

True system: du/dt = ((u^3)^T A)^T, A = [[-0.1, 2.0], [-2.0, -0.1]], u0 = (2, 0).
Data: true solution at 30 evenly spaced times on [0, 1.5], solved with dopri5 at
rtol 1e-10, atol 1e-12.
Model: du/dt = NN(u^3), NN = Linear(2,50) -> tanh -> Linear(50,2), every weight and
bias drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear's default, made explicit).
Solve: dopri5 (torchdiffeq has no Tsit5), rtol 1e-7, atol 1e-9, output at the 30 times.
Loss: sum over the 30 times and 2 components of the squared error.
Optimiser: torch.optim.Adam (defaults), lr 0.1.

Prints one JSON line on stdout; progress goes to stderr.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torchdiffeq
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

torch.set_default_dtype(torch.float64)

T0, T1, N_TIMES = 0.0, 1.5, 30
HIDDEN = 50


class TrueField(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("A", torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))

    def forward(self, t, u):
        return (u**3) @ self.A


class ModelField(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(2, HIDDEN)
        self.l2 = nn.Linear(HIDDEN, 2)
        for layer in (self.l1, self.l2):
            bound = 1.0 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.uniform_(layer.bias, -bound, bound)
        self.nfe = 0

    def forward(self, t, u):
        self.nfe += 1
        return self.l2(torch.tanh(self.l1(u**3)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--adjoint", choices=["backprop", "adjoint"], default="backprop",
                    help="backprop: torchdiffeq.odeint; adjoint: torchdiffeq.odeint_adjoint")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--rtol", type=float, default=1e-7)
    ap.add_argument("--atol", type=float, default=1e-9)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    ts = torch.linspace(T0, T1, N_TIMES)
    u0 = torch.tensor([2.0, 0.0])
    with torch.no_grad():
        data = odeint(TrueField(), u0, ts, rtol=1e-10, atol=1e-12, method="dopri5")

    func = ModelField()
    opt = torch.optim.Adam(func.parameters(), lr=args.lr)

    def solve():
        if args.adjoint == "backprop":
            return odeint(func, u0, ts, rtol=args.rtol, atol=args.atol, method="dopri5")
        return odeint_adjoint(func, u0, ts, rtol=args.rtol, atol=args.atol, method="dopri5",
                              adjoint_rtol=args.rtol, adjoint_atol=args.atol,
                              adjoint_method="dopri5")

    times_ms, losses, nfe_f, nfe_b = [], [], [], []
    for it in range(args.iters):
        t_start = time.perf_counter()
        opt.zero_grad()
        func.nfe = 0
        pred = solve()
        loss = torch.sum((data - pred) ** 2)
        n_fwd = func.nfe
        loss.backward()
        n_bwd = func.nfe - n_fwd
        opt.step()
        dt = time.perf_counter() - t_start
        if it > 0:
            times_ms.append(dt * 1e3)
        losses.append(loss.item())
        nfe_f.append(n_fwd)
        nfe_b.append(n_bwd)
        if it % 100 == 0 or it == args.iters - 1:
            print(f"iter {it} loss {loss.item():.6g} nfe {n_fwd}/{n_bwd}", file=sys.stderr)

    out = {
        "peer": "torchdiffeq",
        "version": f"torchdiffeq={torchdiffeq.__version__} torch={torch.__version__}",
        "seed": args.seed,
        "adjoint": args.adjoint,
        "iters": args.iters,
        "compile_s": 0,
        "ms_per_iter_median": round(statistics.median(times_ms), 4) if times_ms else None,
        # Field calls counted in the forward solve (incl. torchdiffeq's two calls for
        # the initial step size); mean over all iterations.
        "nfe_forward_per_iter": round(statistics.fmean(nfe_f), 2),
        # Field calls during loss.backward(): 0 for backprop (autograd replays the
        # recorded graph), the adjoint ODE's calls for adjoint.
        "nfe_backward_per_iter": round(statistics.fmean(nfe_b), 2),
        "initial_loss": losses[0],
        "final_loss": losses[-1],
        "solver": "dopri5",
        "rtol": args.rtol,
        "atol": args.atol,
        "lr": args.lr,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
