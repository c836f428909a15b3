#!/usr/bin/env bash
# The protocol re-run of label_efficiency (issue 12), from the repository root (runs/ is not committed).
# NOT RUN YET: it needs about 4 hours of both CPU cores (15 initialisations x 14 cells x ~130 s / 2 processes,
# plus ~20 min of pretraining). Copy results.csv, table.md, ttest.csv, architectures.json, parameters.json and the
# figures from runs/lep/ into this folder when it has finished, beside this file.
# Protocol: every registered method ('all') pretrained with the standard layout and fine-tuned on one network with
# its random-init control; PGL, BYOL and MoCo v2 also with their paper's 'pgl' layout, against a random control of
# that network; 5 seeds at 10 % labels, 3 elsewhere; paired tests Holm-corrected across the table (ttest.csv).
# Data and recipe as the superseded run (results/label_efficiency/command.sh), so the two can be set side by side.
set -euo pipefail
mkdir -p runs/lep
rm -f runs/lep/pretrain/ALL_DONE
run() {
  OMP_NUM_THREADS=1 .venv/bin/papermill nbs/experiments/label_efficiency.ipynb "runs/lep/executed_$1.ipynb" --cwd runs/lep \
    -p out_dir . -p n_labelled 16 -p n_unlabelled 8 -p shape 96,80,64 -p phantom_spacing 4,4,4 -p seeds 0,1,2 \
    -p backbone cpu-small -p layout standard -p spacing 6,6,6 -p patch_size 32,32,32 -p pretrain_steps 300 -p finetune_steps 600 \
    -p label_fractions "$1" -p methods all \
    -y "seeds_at: {0.1: [0, 1, 2, 3, 4]}
extra_layouts: {pgl: [pgl, byol, moco]}
compare: [[vectorpose, models_genesis], [pgl, byol]]
hu_range: [-175, 250]
pretrain_overrides: {models_genesis: {shuffle_windows: 1000, bezier_points: 1000}, vectorpose: {shuffle_windows: 1000, bezier_points: 1000}}
finetune_overrides: {flip_p: 0.0, lr: 0.003, eval_every: 100}"
}
run 0.1 &                         # pretrains every method first (both layouts), then the 10 % cells (5 seeds)
until [ -f runs/lep/pretrain/ALL_DONE ]; do sleep 10; done
run 0.25,0.5,1.0 &                # reuses the finished pretraining
wait
run 0.1,0.25,0.5,1.0              # every cell is done: gathers the whole table, the tests and the figures
