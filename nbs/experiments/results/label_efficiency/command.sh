#!/usr/bin/env bash
# SUPERSEDED (issue 12): the run of a comparison made before the protocol; see SUPERSEDED.md and ../label_efficiency_protocol/command.sh.
# The run behind table.md / results.csv / the figures, from the repository root (runs/ is not committed).
# Two halves in parallel (one core each), then the full list once more to gather the 72 finished cells.
# (The random / Models Genesis / VectorPOSE cells were run first without pgl,byol,moco in `methods`; the grid then
# skipped those finished cells and ran only the two-view methods' 36.)
set -euo pipefail
mkdir -p runs/le
run() {
  OMP_NUM_THREADS=1 .venv/bin/papermill nbs/experiments/label_efficiency.ipynb "runs/le/executed_$1.ipynb" --cwd runs/le \
    -p out_dir . -p n_labelled 16 -p n_unlabelled 8 -p shape 96,80,64 -p phantom_spacing 4,4,4 -p seeds 0,1,2 \
    -p backbone cpu-small -p spacing 6,6,6 -p patch_size 32,32,32 -p pretrain_steps 300 -p finetune_steps 600 \
    -p label_fractions "$1" -p methods random,models_genesis,vectorpose,pgl,byol,moco \
    -y "hu_range: [-175, 250]
pretrain_overrides: {models_genesis: {shuffle_windows: 1000, bezier_points: 1000}, vectorpose: {shuffle_windows: 1000, bezier_points: 1000}}
finetune_overrides: {flip_p: 0.0, lr: 0.003, eval_every: 100}"
}
run 0.1,0.5 &                     # pretrains the five methods first, then its fine-tuning cells
until ls runs/le/pretrain/method={vectorpose,models-genesis,pgl,byol,moco}_seed=0/DONE >/dev/null 2>&1; do sleep 10; done
run 0.25,1.0 &                    # reuses the finished pretraining
wait
run 0.1,0.25,0.5,1.0              # every cell is done: gathers the table and the figures
