"""The spiral demo in diffrax from seed S's initial weights, which it also writes for
cnflow, so that both frameworks train from the same start:

    python benches/peers/spiral_same_init.py --seed S --init-out init.txt > diffrax.txt
    target/release/examples/spiral_fit --seed S --init init.txt --log-every 1

prints "iteration loss" per line (the settings are spiral_diffrax.py's: Tsit5 at
rtol 1e-7 / atol 1e-9, backprop, sum of squares, Adam 0.1). The weights are written
flat as W1 (50 x 2), b1, W2 (2 x 50), b2, row-major: cnflow's layout.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spiral_diffrax as sd  # noqa: E402  (enables float64)
import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--init-out", required=True, help="where to write the initial weights")
    args = ap.parse_args()
    p = sd.init_params(jax.random.PRNGKey(args.seed))
    flat = np.concatenate([np.asarray(p["W1"]).ravel(), np.asarray(p["b1"]),
                           np.asarray(p["W2"]).ravel(), np.asarray(p["b2"])])
    with open(args.init_out, "w") as f:
        f.write(" ".join(repr(float(v)) for v in flat) + "\n")
    ts = jnp.linspace(sd.T0, sd.T1, sd.N_TIMES)
    saveat = diffrax.SaveAt(ts=ts)
    data = diffrax.diffeqsolve(
        diffrax.ODETerm(sd.true_field), diffrax.Tsit5(), sd.T0, sd.T1, None, sd.U0, saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
    ).ys
    controller = diffrax.PIDController(rtol=1e-7, atol=1e-9)
    term = diffrax.ODETerm(sd.model_field)

    def loss_fn(p):
        sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), sd.T0, sd.T1, None, sd.U0, args=p, saveat=saveat,
                                  stepsize_controller=controller,
                                  adjoint=diffrax.RecursiveCheckpointAdjoint(), max_steps=100_000)
        return jnp.sum((data - sol.ys) ** 2)

    opt = optax.adam(0.1)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    s = opt.init(p)
    for it in range(args.iters):
        p, s, loss = step(p, s)
        print(it + 1, float(loss))


if __name__ == "__main__":
    main()
