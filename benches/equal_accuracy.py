#!/usr/bin/env python3
"""Equal-accuracy times per method from stiff_benchmark JSON lines:
    python3 benches/equal_accuracy.py RUN.jsonl rodas4,radau5,bdf,tr-bdf2,kvaerno5
For each problem and target error, the time of each method (log time interpolated
linearly in log error between the two runs that bracket the target; — where none does)."""
import json, math, sys, collections
rows=[json.loads(l) for l in open(sys.argv[1])]
by=collections.defaultdict(list)
for r in rows:
    if r['success']: by[(r['problem'],r['method'])].append((r['err_mixed'],r['wall_s_median']))
def at(pts,target):
    pts=sorted(pts,key=lambda p:-p[0])
    best=None
    for (e1,t1),(e2,t2) in zip(pts,pts[1:]):
        if e1>=target>=e2 and e1>0 and e2>0:
            if e1==e2: t=min(t1,t2)
            else:
                f=(math.log(target)-math.log(e1))/(math.log(e2)-math.log(e1)); t=math.exp(math.log(t1)+f*(math.log(t2)-math.log(t1)))
            best=t if best is None else min(best,t)
    if best is None and pts and pts[0][0]<=target: best=min(t for e,t in pts if e<=target)
    return best
methods=sys.argv[2].split(',')
probs=sorted(set(p for p,m in by), key=lambda p:[r['problem'] for r in rows].index(p))
print('| problem | error | '+' | '.join(methods)+' |')
print('|---|---|'+'---|'*len(methods))
for p in probs:
    for e in [1e-3,1e-5,1e-7,1e-9]:
        ts=[at(by[(p,m)],e) for m in methods]
        print(f'| {p} | {e:.0e} | '+' | '.join('—' if t is None else f'{t*1e3:.3f}' for t in ts)+' |')
