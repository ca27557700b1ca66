#!/usr/bin/env python3
"""Lotka-Volterra parameter recovery in JAX + diffrax.

True system: dx/dt = a x - b x y, dy/dt = -d y + g x y, (a, b, d, g) = (1.5, 1, 3, 1),
(x, y)(0) = (1, 1). Observations at t = 0, 0.1, ..., 10 (101 points) of the true
solution (Tsit5, rtol 1e-10, atol 1e-12), each value multiplied by (1 + 0.01 N(0,1))
with the noise drawn from numpy's default_rng(--seed).
Fit: all four parameters from (2.2, 1.0, 2.0, 0.4), initial state fixed at (1, 1);
Tsit5, PIDController(rtol 1e-6, atol 1e-8), RecursiveCheckpointAdjoint; loss = mean
squared error over the 101 x 2 values; Adam (optax defaults) with --lr.
Stops after the first update that brings all four parameters within 1 % of the
truth, or after --iters updates.

Timing: the jitted step is compiled ahead of time (jit(...).lower(...).compile());
compile_s is that time, and seconds_to_1pct is the wall time of the updates 1..k
(k = iters_to_1pct), none of which compiles.

Prints one JSON line on stdout; progress goes to stderr.
"""
import argparse
import json
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

P_TRUE = np.array([1.5, 1.0, 3.0, 1.0])
P_START = np.array([2.2, 1.0, 2.0, 0.4])
Y0 = jnp.array([1.0, 1.0])
TS = jnp.linspace(0.0, 10.0, 101)


def lv(t, y, p):
    x, z = y[0], y[1]
    a, b, d, g = p[0], p[1], p[2], p[3]
    return jnp.stack([a * x - b * x * z, -d * z + g * x * z])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=3000, help="maximum number of updates")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--max-steps", type=int, default=100_000)
    ap.add_argument("--write-csv", help="write the noisy observations (t,x,y) to this file and exit")
    args = ap.parse_args()

    saveat = diffrax.SaveAt(ts=TS)
    clean = diffrax.diffeqsolve(
        diffrax.ODETerm(lv), diffrax.Tsit5(), TS[0], TS[-1], None, Y0, args=jnp.asarray(P_TRUE),
        saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
        max_steps=args.max_steps,
    ).ys
    rng = np.random.default_rng(args.seed)
    obs = jnp.asarray(np.asarray(clean) * (1.0 + 0.01 * rng.standard_normal(clean.shape)))
    if args.write_csv:
        with open(args.write_csv, "w") as f:
            f.write("t,x,y\n")
            for t, (x, y) in zip(np.asarray(TS), np.asarray(obs)):
                f.write(f"{float(t)!r},{float(x)!r},{float(y)!r}\n")
        return

    solver = diffrax.Tsit5()
    controller = diffrax.PIDController(rtol=args.rtol, atol=args.atol)
    adjoint = diffrax.RecursiveCheckpointAdjoint()
    term = diffrax.ODETerm(lv)

    def loss_fn(p):
        ys = diffrax.diffeqsolve(
            term, solver, TS[0], TS[-1], None, Y0, args=p, saveat=saveat,
            stepsize_controller=controller, adjoint=adjoint, max_steps=args.max_steps,
        ).ys
        return jnp.mean((ys - obs) ** 2)

    opt = optax.adam(args.lr)

    def step(p, opt_state):
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = opt.update(g, opt_state, p)
        p = optax.apply_updates(p, updates)
        return p, opt_state, loss

    params = jnp.asarray(P_START)
    opt_state = opt.init(params)

    t_c = time.perf_counter()
    step_c = jax.jit(step).lower(params, opt_state).compile()
    compile_s = time.perf_counter() - t_c

    times, loss = [], None
    hit = None
    for it in range(1, args.iters + 1):
        t_start = time.perf_counter()
        params, opt_state, loss = step_c(params, opt_state)
        jax.block_until_ready((params, opt_state, loss))
        times.append(time.perf_counter() - t_start)
        p = np.asarray(params)
        if it % 250 == 0:
            print(f"iter {it} loss {float(loss):.6g} params {p.round(4).tolist()}", file=sys.stderr)
        if np.all(np.abs(p - P_TRUE) <= 0.01 * np.abs(P_TRUE)):
            hit = it
            break

    out = {
        "peer": "diffrax",
        "version": f"diffrax={diffrax.__version__} jax={jax.__version__} "
                   f"jaxlib={jaxlib.__version__} optax={optax.__version__}",
        "seed": args.seed,
        "lr": args.lr,
        "iters_to_1pct": hit,
        "seconds_to_1pct": round(sum(times), 4) if hit is not None else None,
        "iters_run": len(times),
        "compile_s": round(compile_s, 4),
        "ms_per_iter_median": round(statistics.median(times) * 1e3, 4),
        "params": [float(v) for v in np.asarray(params)],
        "final_loss": float(loss),  # loss before the last update
        "solver": "Tsit5",
        "rtol": args.rtol,
        "atol": args.atol,
        "threads": len(os.sched_getaffinity(0)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
