#!/usr/bin/env python3
"""Stiff-problem peer benchmark: scipy.integrate.solve_ivp (Radau, BDF, LSODA) and,
when it is installed, pydiffsol (diffsol's BDF, ESDIRK34 and TR-BDF2 through DiffSL).

Problems (definitions, sources and reference values: benches/peers/stiff_problems.md):

  robertson_1e5      ROBER on [0, 1e5]     (SciML benchmark span; own reference)
  robertson_1e11     ROBER on [0, 1e11]    (Test Set for IVP Solvers, ROBER)
  vdpol_mu1e3        x'' = mu (1 - x^2) x' - x, mu = 1e3, [0, 2000]   (test set VDPOLM)
  vdpol_mu1e3_t3000  the same on [0, 3000] (MATLAB's vdp1000 span; own reference)
  vdpol_eps1e-6      the test set's scaled VDPOL, eps = 1e-6, [0, 2]
  hires              HIRES, 8 components, [0, 321.8122]
  orego              OREGO (Oregonator), 3 components, [0, 360]

Tolerances: atol = rtol * atol_scale, with one scalar atol_scale per problem (the
ATOL_SCALE column of stiff_problems.md; --atol-scale overrides it for every problem).

Error at t_end (the test set's "mixed error", the same definition the Rust side uses):

  err = max_i |y_i - ref_i| / (atol_scale + |ref_i|),   mescd = -log10(err)

with atol_scale = atol / rtol.

Output: one JSON line per (problem, method, rtol) on stdout; progress on stderr.

  PY=/work/peers-venv/bin/python
  $PY benches/peers/stiff_scipy.py                       # everything, 5 repeats
  $PY benches/peers/stiff_scipy.py --problems hires,orego --methods Radau,BDF \
      --rtols 1e-4,1e-6,1e-8 --repeats 5
  $PY benches/peers/stiff_scipy.py --reference           # recompute own references

Timing: wall time of the solve call only (time.perf_counter), median over --repeats.
For pydiffsol the DiffSL JIT compile happens once per (problem, method) outside the
timed region and is reported as compile_s.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import scipy
from scipy.integrate import solve_ivp

try:  # optional peer
    import pydiffsol as ds
except Exception:  # noqa: BLE001 - any import failure just disables the peer
    ds = None


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------

# Robertson (ROBER): k1 = 0.04, k2 = 3e7, k3 = 1e4 (test set naming).
def rober_f(t, y):
    y1, y2, y3 = y
    return np.array([
        -0.04 * y1 + 1.0e4 * y2 * y3,
        0.04 * y1 - 1.0e4 * y2 * y3 - 3.0e7 * y2 * y2,
        3.0e7 * y2 * y2,
    ])


def rober_jac(t, y):
    _, y2, y3 = y
    return np.array([
        [-0.04, 1.0e4 * y3, 1.0e4 * y2],
        [0.04, -1.0e4 * y3 - 6.0e7 * y2, -1.0e4 * y2],
        [0.0, 6.0e7 * y2, 0.0],
    ])


ROBER_DIFFSL = """
u_i { y1 = 1, y2 = 0, y3 = 0 }
F_i {
  -0.04 * y1 + 10000.0 * y2 * y3,
  0.04 * y1 - 10000.0 * y2 * y3 - 30000000.0 * y2 * y2,
  30000000.0 * y2 * y2,
}
"""

# Van der Pol, unscaled: y1' = y2, y2' = mu (1 - y1^2) y2 - y1 (test set VDPOLM, mu = 1e3).
MU = 1.0e3


def vdpm_f(t, y):
    y1, y2 = y
    return np.array([y2, MU * (1.0 - y1 * y1) * y2 - y1])


def vdpm_jac(t, y):
    y1, y2 = y
    return np.array([[0.0, 1.0], [-2.0 * MU * y1 * y2 - 1.0, MU * (1.0 - y1 * y1)]])


VDPM_DIFFSL = """
u_i { y1 = 2, y2 = 0 }
F_i { y2, 1000.0 * (1 - y1 * y1) * y2 - y1 }
"""

# Van der Pol, scaled (test set VDPOL): y1' = y2, y2' = ((1 - y1^2) y2 - y1) / eps.
EPS = 1.0e-6


def vdp_f(t, y):
    y1, y2 = y
    return np.array([y2, ((1.0 - y1 * y1) * y2 - y1) / EPS])


def vdp_jac(t, y):
    y1, y2 = y
    return np.array([[0.0, 1.0], [(-2.0 * y1 * y2 - 1.0) / EPS, (1.0 - y1 * y1) / EPS]])


VDP_DIFFSL = """
u_i { y1 = 2, y2 = 0 }
F_i { y2, ((1 - y1 * y1) * y2 - y1) / 0.000001 }
"""


# HIRES (test set hires.f).
def hires_f(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    f7 = 280.0 * y6 * y8 - 1.81 * y7
    return np.array([
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * (y6 + y7),
        -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        f7,
        -f7,
    ])


def hires_jac(t, y):
    y6, y8 = y[5], y[7]
    j = np.zeros((8, 8))
    j[0, 0], j[0, 1], j[0, 2] = -1.71, 0.43, 8.32
    j[1, 0], j[1, 1] = 1.71, -8.75
    j[2, 2], j[2, 3], j[2, 4] = -10.03, 0.43, 0.035
    j[3, 1], j[3, 2], j[3, 3] = 8.32, 1.71, -1.12
    j[4, 4], j[4, 5], j[4, 6] = -1.745, 0.43, 0.43
    j[5, 3], j[5, 4], j[5, 5], j[5, 6], j[5, 7] = 0.69, 1.71, -280.0 * y8 - 0.43, 0.69, -280.0 * y6
    j[6, 5], j[6, 6], j[6, 7] = 280.0 * y8, -1.81, 280.0 * y6
    j[7, 5], j[7, 6], j[7, 7] = -280.0 * y8, 1.81, -280.0 * y6
    return j


HIRES_DIFFSL = """
u_i { y1 = 1, y2 = 0, y3 = 0, y4 = 0, y5 = 0, y6 = 0, y7 = 0, y8 = 0.0057 }
F_i {
  -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
  1.71 * y1 - 8.75 * y2,
  -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
  8.32 * y2 + 1.71 * y3 - 1.12 * y4,
  -1.745 * y5 + 0.43 * (y6 + y7),
  -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
  280.0 * y6 * y8 - 1.81 * y7,
  -280.0 * y6 * y8 + 1.81 * y7,
}
"""


# OREGO (test set orego.f): s = 77.27, w = 0.161, q = 8.375e-6.
def orego_f(t, y):
    y1, y2, y3 = y
    return np.array([
        77.27 * (y2 + y1 * (1.0 - 8.375e-6 * y1 - y2)),
        (y3 - (1.0 + y1) * y2) / 77.27,
        0.161 * (y1 - y3),
    ])


def orego_jac(t, y):
    y1, y2, _ = y
    return np.array([
        [77.27 * (1.0 - 2.0 * 8.375e-6 * y1 - y2), 77.27 * (1.0 - y1), 0.0],
        [-y2 / 77.27, -(1.0 + y1) / 77.27, 1.0 / 77.27],
        [0.161, 0.0, -0.161],
    ])


OREGO_DIFFSL = """
u_i { y1 = 1, y2 = 2, y3 = 3 }
F_i {
  77.27 * (y2 + y1 * (1 - 0.000008375 * y1 - y2)),
  (y3 - (1 + y1) * y2) / 77.27,
  0.161 * (y1 - y3),
}
"""

TESTSET = "Test Set for IVP Solvers (Mazzia, Magherini et al., Univ. Bari), solut() in "

# ref: the value the error is measured against. "published" is set where a literature
# value exists; "own" is this script's --reference result (scipy Radau, rtol 1e-13),
# used where nothing is published. See stiff_problems.md for the cross-checks.
PROBLEMS = {
    "robertson_1e5": dict(
        f=rober_f, jac=rober_jac, y0=[1.0, 0.0, 0.0], t_end=1.0e5, atol_scale=1e-6,
        diffsl=ROBER_DIFFSL,
        published=None,
        own=[1.7865921142100043e-02, 7.274751468436544e-08, 9.821340061103871e-01],
        ref_source="own: scipy Radau rtol 1e-13 (no published value at t=1e5 found)",
    ),
    "robertson_1e11": dict(
        f=rober_f, jac=rober_jac, y0=[1.0, 0.0, 0.0], t_end=1.0e11, atol_scale=1e-10,
        diffsl=ROBER_DIFFSL,
        published=[0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050e+00],
        own=None,
        ref_source=TESTSET + "rober.f (RADAU, uround 1.01e-19)",
    ),
    "vdpol_mu1e3": dict(
        f=vdpm_f, jac=vdpm_jac, y0=[2.0, 0.0], t_end=2.0e3, atol_scale=1e-3,
        diffsl=VDPM_DIFFSL,
        published=[0.1706167732170469e+01, -0.8928097010248125e-03],
        own=None,
        ref_source=TESTSET + "vdpolm.f (RADAU, uround 1.01e-19)",
    ),
    "vdpol_mu1e3_t3000": dict(
        f=vdpm_f, jac=vdpm_jac, y0=[2.0, 0.0], t_end=3.0e3, atol_scale=1e-3,
        diffsl=VDPM_DIFFSL,
        published=None,
        own=[-1.5106069367442216e+00, 1.1783800007306915e-03],
        ref_source="own: scipy Radau rtol 1e-13 (no published value at t=3000 found)",
    ),
    "vdpol_eps1e-6": dict(
        f=vdp_f, jac=vdp_jac, y0=[2.0, 0.0], t_end=2.0, atol_scale=1.0,
        diffsl=VDP_DIFFSL,
        published=[0.1706167732170483e+01, -0.8928097010247975e+00],
        own=None,
        ref_source=TESTSET + "vdpol.f (RADAU, uround 1.01e-19)",
    ),
    "hires": dict(
        f=hires_f, jac=hires_jac, y0=[1.0, 0, 0, 0, 0, 0, 0, 0.0057], t_end=321.8122,
        atol_scale=1e-4, diffsl=HIRES_DIFFSL,
        published=[0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4,
                   0.1175651343283149e-2, 0.2386356198831331e-2, 0.6238968252742796e-2,
                   0.2849998395185769e-2, 0.2850001604814231e-2],
        own=None,
        ref_source=TESTSET + "hires.f (RADAU5, Cray C90, uround 1.01e-19)",
    ),
    "orego": dict(
        f=orego_f, jac=orego_jac, y0=[1.0, 2.0, 3.0], t_end=360.0, atol_scale=1.0,
        diffsl=OREGO_DIFFSL,
        published=[0.1000814870318523e+01, 0.1228178521549917e+04, 0.1320554942846706e+03],
        own=None,
        ref_source=TESTSET + "orego.f (RADAU, uround 1.01e-19)",
    ),
}

DEFAULT_PROBLEMS = list(PROBLEMS)
SCIPY_METHODS = ["Radau", "BDF", "LSODA"]
DIFFSOL_METHODS = {"diffsol-bdf": "bdf", "diffsol-esdirk34": "esdirk34", "diffsol-tr_bdf2": "tr_bdf2"}
DEFAULT_RTOLS = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]


def reference_of(p):
    return p["published"] if p["published"] is not None else p["own"]


def mixed_error(y, ref, scale):
    """max_i |y_i - ref_i| / (scale + |ref_i|), scale = atol/rtol (test set 'mescd' base)."""
    y = np.asarray(y, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if not np.all(np.isfinite(y)):
        return float("inf")
    return float(np.max(np.abs(y - ref) / (scale + np.abs(ref))))


def mescd(err):
    if err == 0.0:
        return float("inf")
    return -math.log10(err) if math.isfinite(err) else float("-inf")


def jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ---------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------

def run_scipy(p, method, rtol, atol, repeats):
    times, sol = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        sol = solve_ivp(p["f"], (0.0, p["t_end"]), np.array(p["y0"], dtype=float),
                        method=method, jac=p["jac"], rtol=rtol, atol=atol)
        times.append(time.perf_counter() - t0)
    ok = bool(sol.success) and math.isclose(sol.t[-1], p["t_end"], rel_tol=1e-12)
    return dict(
        peer="scipy", version=scipy.__version__, times=times, success=ok,
        message=str(sol.message), y_end=[float(v) for v in sol.y[:, -1]],
        t_reached=float(sol.t[-1]), nfev=int(sol.nfev), njev=int(sol.njev),
        nlu=int(sol.nlu), n_steps=int(len(sol.t) - 1),
    )


_DIFFSOL_CACHE = {}


def run_diffsol(name, p, method, rtol, atol, repeats):
    key = (name, method)
    compile_s = None
    if key not in _DIFFSOL_CACHE:
        t0 = time.perf_counter()
        ode = ds.Ode(p["diffsl"], matrix_type=ds.nalgebra_dense,
                     ode_solver=ds.OdeSolverType.from_str(DIFFSOL_METHODS[method]))
        compile_s = time.perf_counter() - t0
        _DIFFSOL_CACHE[key] = (ode, compile_s)
    ode, compile_s = _DIFFSOL_CACHE[key]
    ode.rtol = rtol
    ode.atol = atol
    params = np.array([], dtype=float)
    times, sol, err = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            sol = ode.solve(params, p["t_end"])
        except Exception as e:  # noqa: BLE001 - diffsol raises RuntimeError on failure
            times.append(time.perf_counter() - t0)
            err = str(e)
            break
        times.append(time.perf_counter() - t0)
    common = dict(peer="pydiffsol", version=ds.version(),
                  diffsol_version=ds.diffsol_version(), compile_s=compile_s,
                  matrix_type="nalgebra_dense", times=times, nfev=None, njev=None, nlu=None)
    if err is not None:
        return dict(common, success=False, message=err, y_end=None, t_reached=None, n_steps=None)
    ts = np.asarray(sol.ts)
    ys = np.asarray(sol.ys)
    ok = math.isclose(float(ts[-1]), p["t_end"], rel_tol=1e-12)
    return dict(common, success=ok, message="ok" if ok else "did not reach t_end",
                y_end=[float(v) for v in ys[:, -1]], t_reached=float(ts[-1]),
                n_steps=int(len(ts) - 1))


def bench(args):
    problems = args.problems.split(",")
    methods = args.methods.split(",") if args.methods else (
        SCIPY_METHODS + (list(DIFFSOL_METHODS) if ds is not None else []))
    rtols = [float(r) for r in args.rtols.split(",")] if args.rtols else DEFAULT_RTOLS
    for m in methods:
        if m not in SCIPY_METHODS and m not in DIFFSOL_METHODS:
            sys.exit(f"unknown method {m!r}; known: {SCIPY_METHODS + list(DIFFSOL_METHODS)}")
        if m in DIFFSOL_METHODS and ds is None:
            sys.exit(f"method {m} needs pydiffsol, which is not importable")
    for name in problems:
        if name not in PROBLEMS:
            sys.exit(f"unknown problem {name!r}; known: {list(PROBLEMS)}")
        p = PROBLEMS[name]
        ref = reference_of(p)
        scale = args.atol_scale if args.atol_scale is not None else p["atol_scale"]
        for method in methods:
            for rtol in rtols:
                atol = rtol * scale
                log(f"{name} {method} rtol={rtol:g} atol={atol:g} ...")
                if method in SCIPY_METHODS:
                    r = run_scipy(p, method, rtol, atol, args.repeats)
                else:
                    r = run_diffsol(name, p, method, rtol, atol, args.repeats)
                times = r.pop("times")
                e = mixed_error(r["y_end"], ref, scale) if (r["y_end"] is not None and ref is not None) else None
                out = dict(
                    peer=r.pop("peer"), version=r.pop("version"), problem=name, method=method,
                    rtol=rtol, atol=atol, atol_scale=scale, t_end=p["t_end"],
                    repeats=len(times), wall_s_median=statistics.median(times),
                    wall_s_min=min(times), wall_s_all=times,
                    err_mixed=jsonable(e) if e is not None else None,
                    mescd=jsonable(mescd(e)) if e is not None else None,
                    ref=ref, ref_source=p["ref_source"],
                    **r,
                )
                print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------
# Reference computation (--reference): tight scipy Radau plus cross-checks
# ---------------------------------------------------------------------------

def reference(args):
    problems = args.problems.split(",")
    for name in problems:
        p = PROBLEMS[name]
        y0 = np.array(p["y0"], dtype=float)
        res = {}
        for label, method, rtol, atol in [
            ("Radau_1e-13", "Radau", 1e-13, 1e-30),
            ("Radau_1e-12", "Radau", 1e-12, 1e-30),
            ("LSODA_1e-12", "LSODA", 1e-12, 1e-30),
        ]:
            t0 = time.perf_counter()
            sol = solve_ivp(p["f"], (0.0, p["t_end"]), y0, method=method, jac=p["jac"],
                            rtol=rtol, atol=atol)
            dt = time.perf_counter() - t0
            res[label] = dict(y=[float(v) for v in sol.y[:, -1]], ok=bool(sol.success),
                              nsteps=len(sol.t) - 1, seconds=dt)
            log(f"{name} {label}: {sol.message} {dt:.1f}s")
        if name == "hires":  # mildly stiff: an explicit 8(5,3) pair is cheap here
            t0 = time.perf_counter()
            sol = solve_ivp(p["f"], (0.0, p["t_end"]), y0, method="DOP853", rtol=1e-13, atol=1e-30)
            res["DOP853_1e-13"] = dict(y=[float(v) for v in sol.y[:, -1]], ok=bool(sol.success),
                                       nsteps=len(sol.t) - 1, seconds=time.perf_counter() - t0)
        if name.startswith("vdpol_mu1e3"):  # same solution through the scaled form:
            # x(t) = y1(t/mu), x'(t) = y2(t/mu)/mu with eps = 1/mu^2 (a different numerical path)
            t0 = time.perf_counter()
            sol = solve_ivp(vdp_f, (0.0, p["t_end"] / MU), y0, method="Radau", jac=vdp_jac,
                            rtol=1e-13, atol=1e-30)
            res["Radau_1e-13_scaled_form"] = dict(y=[float(sol.y[0, -1]), float(sol.y[1, -1] / MU)],
                                                  ok=bool(sol.success), nsteps=len(sol.t) - 1,
                                                  seconds=time.perf_counter() - t0)
        if ds is not None:  # diffsol BDF fails ("step size too small") with atol 1e-30
            ode = ds.Ode(p["diffsl"], matrix_type=ds.nalgebra_dense)
            ode.rtol, ode.atol = 1e-12, 1e-12 * p["atol_scale"]
            t0 = time.perf_counter()
            try:
                s = ode.solve(np.array([], dtype=float), p["t_end"])
                res["diffsol-bdf_1e-12"] = dict(y=[float(v) for v in np.asarray(s.ys)[:, -1]], ok=True,
                                                nsteps=len(s.ts) - 1, seconds=time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001
                res["diffsol-bdf_1e-12"] = dict(y=None, ok=False, error=str(e))
        base = np.array(res["Radau_1e-13"]["y"])
        pub = p["published"]
        rows = {}
        for label, r in res.items():
            if r.get("y") is None:
                rows[label] = r
                continue
            y = np.array(r["y"])
            rows[label] = dict(r, relerr_vs_radau13=[float(v) for v in np.abs(y - base) / np.abs(base)],
                               relerr_vs_published=None if pub is None else
                               [float(v) for v in np.abs(y - np.array(pub)) / np.abs(np.array(pub))],
                               mixed_vs_published=None if pub is None else mixed_error(y, pub, p["atol_scale"]))
        print(json.dumps(dict(problem=name, t_end=p["t_end"], published=pub, runs=rows)), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS),
                    help="comma list (default: all): " + ",".join(PROBLEMS))
    ap.add_argument("--methods", default=None,
                    help="comma list of Radau,BDF,LSODA and, with pydiffsol, "
                         + ",".join(DIFFSOL_METHODS) + " (default: all available)")
    ap.add_argument("--rtols", default=None, help="comma list (default 1e-3,...,1e-9)")
    ap.add_argument("--repeats", type=int, default=5, help="timed solves per row; median reported")
    ap.add_argument("--atol-scale", type=float, default=None,
                    help="override every problem's atol_scale (atol = rtol * atol_scale)")
    ap.add_argument("--reference", action="store_true",
                    help="recompute the tight references and cross-checks instead of benchmarking")
    args = ap.parse_args()
    log(f"scipy {scipy.__version__}, numpy {np.__version__}, pydiffsol "
        f"{ds.version() if ds is not None else 'not installed'}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    if args.reference:
        reference(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
