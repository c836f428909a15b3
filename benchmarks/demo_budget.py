"""Does `ssl3d demo` keep its budget when another CPU-heavy process shares the machine? (issue 12, part 6)

Run: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_budget.py --budget-minutes 4 --hogs 1`.
Starts `--hogs` CPU-bound processes (pure-Python busy loops), then runs `ssl3d demo` with the given budget (planned
steps, i.e. no explicit step counts) in a fresh folder, and prints the wall time, the budget, their ratio (the demo
promises <= 1.10), each stage's seconds and what the demo re-planned (planned -> trained steps). `--hogs 0` gives
the unloaded reference in the same script. It is a benchmark, not a test: it takes the budget in wall time, too
slow for CI, and its outcome depends on the machine.
"""
import argparse, json, multiprocessing as mp, os, subprocess, sys, tempfile, time
from pathlib import Path


def _hog(stop):
    "Burn one core until told to stop."
    x = 0
    while not stop.is_set():
        for i in range(100000): x = (x * 31 + i) % 1000003


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--budget-minutes', type=float, default=4.0, help='the demo budget (the README demo uses 15)')
    ap.add_argument('--hogs', type=int, default=1, help='CPU-bound processes running beside the demo')
    ap.add_argument('--out', default=None, help='demo folder (default: a new temporary folder)')
    ap.add_argument('--demo-args', default='--n 8 --n-unlabelled 2', help='further `ssl3d demo` arguments (smaller data: a shorter fixed part)')
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix='demo_budget_')) / 'demo'
    stop = mp.Event()
    hogs = [mp.Process(target=_hog, args=(stop,), daemon=True) for _ in range(a.hogs)]
    for h in hogs: h.start()
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    cmd = [sys.executable, '-c', 'import sys; from ssl3d.cli import main; sys.exit(main(sys.argv[1:]))', 'demo', '--out', str(out), '--budget-minutes', str(a.budget_minutes),
           '--device', 'cpu', *a.demo_args.split()]
    t = time.time()
    try: r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        stop.set()
        for h in hogs: h.join(5)
    wall = time.time() - t
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:]); sys.exit(f"demo failed (exit {r.returncode})")
    res = json.loads((out / 'results.json').read_text())
    budget = a.budget_minutes * 60
    print(f"hogs {a.hogs}; budget {budget:.0f} s; wall {wall:.0f} s; wall / budget = {wall / budget:.3f} (promise <= 1.10)")
    print(f"plan (upper bounds): {res['plan']['pretrain_steps']} pretraining, {res['plan']['finetune_steps']} fine-tuning steps; "
          f"re-planned: {res['plan'].get('replanned') or 'nothing'}")
    print(f"stage seconds: {res['timings']}")
    print('mean Dice: ' + ', '.join(f"{k} {v['dice']}" for k, v in res['mean'].items()))


if __name__ == '__main__':
    main()
