#!/usr/bin/env python3
"""Spiral neural-ODE demo (the DiffEqFlux / torchdiffeq "ODE demo") in JAX + diffrax.

True system: du/dt = ((u^3)^T A)^T, A = [[-0.1, 2.0], [-2.0, -0.1]], u0 = (2, 0).
Data: true solution at 30 evenly spaced times on [0, 1.5], solved with Tsit5 at
rtol 1e-10, atol 1e-12.
Model: du/dt = NN(u^3), NN = Linear(2,50) -> tanh -> Linear(50,2), every weight and
bias drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear default).
Solve: Tsit5, PIDController(rtol 1e-7, atol 1e-9), SaveAt(ts=the 30 times).
Loss: sum over the 30 times and 2 components of the squared error.
Optimiser: Adam (optax defaults), lr 0.1.

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
import equinox  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import optax  # noqa: E402

A_TRUE = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = jnp.array([2.0, 0.0])
T0, T1, N_TIMES = 0.0, 1.5, 30
HIDDEN = 50


def true_field(t, u, args):
    # Row vector (u^3)^T times A, i.e. A^T u^3.
    return (u**3) @ A_TRUE


def init_params(key):
    """PyTorch nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    b1 = 1.0 / jnp.sqrt(2.0)
    b2 = 1.0 / jnp.sqrt(float(HIDDEN))
    u = lambda k, shape, b: jax.random.uniform(k, shape, jnp.float64, -b, b)
    return {
        "W1": u(k1, (HIDDEN, 2), b1),
        "b1": u(k2, (HIDDEN,), b1),
        "W2": u(k3, (2, HIDDEN), b2),
        "b2": u(k4, (2,), b2),
    }


def model_field(t, u, p):
    h = jnp.tanh(p["W1"] @ (u**3) + p["b1"])
    return p["W2"] @ h + p["b2"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--adjoint", choices=["backprop", "adjoint"], default="backprop",
                    help="backprop: RecursiveCheckpointAdjoint; adjoint: BacksolveAdjoint")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--rtol", type=float, default=1e-7)
    ap.add_argument("--atol", type=float, default=1e-9)
    ap.add_argument("--max-steps", type=int, default=100_000,
                    help="diffeqsolve max_steps (RecursiveCheckpointAdjoint sizes its "
                         "checkpoints from it, logarithmically)")
    args = ap.parse_args()

    ts = jnp.linspace(T0, T1, N_TIMES)
    saveat = diffrax.SaveAt(ts=ts)

    # Data: the true solution, solved tightly.
    data = diffrax.diffeqsolve(
        diffrax.ODETerm(true_field), diffrax.Tsit5(), T0, T1, None, U0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
        max_steps=args.max_steps,
    ).ys

    solver = diffrax.Tsit5()
    controller = diffrax.PIDController(rtol=args.rtol, atol=args.atol)
    if args.adjoint == "backprop":
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    else:
        adjoint = diffrax.BacksolveAdjoint(solver=solver, stepsize_controller=controller)
    term = diffrax.ODETerm(model_field)

    def loss_fn(p):
        sol = diffrax.diffeqsolve(
            term, solver, T0, T1, None, U0, args=p, saveat=saveat,
            stepsize_controller=controller, adjoint=adjoint, max_steps=args.max_steps,
        )
        loss = jnp.sum((data - sol.ys) ** 2)
        st = sol.stats
        return loss, (st["num_steps"], st["num_accepted_steps"], st["num_rejected_steps"])

    opt = optax.adam(args.lr)

    @jax.jit
    def step(p, opt_state):
        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, opt_state = opt.update(g, opt_state, p)
        p = optax.apply_updates(p, updates)
        return p, opt_state, loss, stats

    params = init_params(jax.random.PRNGKey(args.seed))
    opt_state = opt.init(params)

    times_ms, losses, steps, acc, rej = [], [], [], [], []
    compile_s = None
    for it in range(args.iters):
        t_start = time.perf_counter()
        params, opt_state, loss, stats = step(params, opt_state)
        jax.block_until_ready((params, opt_state, loss, stats))
        dt = time.perf_counter() - t_start
        if it == 0:
            compile_s = dt
        else:
            times_ms.append(dt * 1e3)
        losses.append(float(loss))
        steps.append(int(stats[0]))
        acc.append(int(stats[1]))
        rej.append(int(stats[2]))
        if it % 100 == 0 or it == args.iters - 1:
            print(f"iter {it} loss {float(loss):.6g} steps {int(stats[0])}", file=sys.stderr)

    mean_steps = statistics.fmean(steps)
    out = {
        "peer": "diffrax",
        "version": f"diffrax={diffrax.__version__} jax={jax.__version__} "
                   f"jaxlib={jaxlib.__version__} equinox={equinox.__version__} "
                   f"optax={optax.__version__}",
        "seed": args.seed,
        "adjoint": args.adjoint,
        "iters": args.iters,
        "compile_s": round(compile_s, 4),
        "ms_per_iter_median": round(statistics.median(times_ms), 4) if times_ms else None,
        # Tsit5 is FSAL: every step, accepted or rejected, costs 6 new field
        # evaluations, plus 1 at t0 (checked against an io_callback counter:
        # 1 + 6*num_steps exactly). Mean over all iterations.
        "nfe_forward_per_iter": round(1 + 6 * mean_steps, 2),
        "num_steps_per_iter": round(mean_steps, 2),
        "num_accepted_per_iter": round(statistics.fmean(acc), 2),
        "num_rejected_per_iter": round(statistics.fmean(rej), 2),
        "initial_loss": losses[0],
        "final_loss": losses[-1],
        "solver": "Tsit5",
        "rtol": args.rtol,
        "atol": args.atol,
        "lr": args.lr,
        # XLA's CPU backend sizes its intra-op thread pool to the host's cores; jax
        # exposes no query for it, so this is the core count visible to the process.
        "threads": len(os.sched_getaffinity(0)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
