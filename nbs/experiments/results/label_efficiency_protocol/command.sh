#!/usr/bin/env bash
# The protocol re-run of label_efficiency (issue 12), from the repository root (runs/ is not committed);
# results.csv, table.md, ttest.csv, architectures.json, parameters.json and the figures were copied from runs/lep/.
# Protocol: every registered method ('all') pretrained with the standard layout and fine-tuned on one network with
# a random-init control of that network (the ViT methods MAE, Alice and MixCL get the UNETR network and its own
# random control); 5 seeds at 10 % labels, 3 at 100 %, every initialisation on the same labelled subset per
# (fraction, seed); paired tests Holm-corrected across the table (ttest.csv).
# Data as the superseded run (results/label_efficiency/command.sh); the fine-tuning budget is 200 steps (not 600)
# and the fractions are 10 % and 100 %, so that the 96 fine-tunes (12 initialisations x 8 cells) fit in one session:
# about 2 h of two CPU cores shared with other work (35 min of pretraining, mostly MixCL and LRC; a UNETR fine-tune
# costs ~4x a ResNet one). A 50 % column was started (label_fractions 0.1,1.0,0.5) and stopped unfinished; it is
# not in these results.
set -euo pipefail
mkdir -p runs/lep
OMP_NUM_THREADS=1 .venv/bin/papermill nbs/experiments/label_efficiency.ipynb runs/lep/executed.ipynb --cwd runs/lep \
  -p out_dir . -p n_labelled 16 -p n_unlabelled 8 -p shape 96,80,64 -p phantom_spacing 4,4,4 -p seeds 0,1,2 \
  -p backbone cpu-small -p layout standard -p spacing 6,6,6 -p patch_size 32,32,32 -p pretrain_steps 300 \
  -p finetune_steps 200 -p label_fractions 0.1,1.0 -p methods all -p processes 2 \
  -y "seeds_at: {0.1: [0, 1, 2, 3, 4]}
compare: [[vectorpose, models_genesis], [pgl, byol]]
hu_range: [-175, 250]
pretrain_overrides: {models_genesis: {shuffle_windows: 1000, bezier_points: 1000}, vectorpose: {shuffle_windows: 1000, bezier_points: 1000}}
finetune_overrides: {flip_p: 0.0, lr: 0.003, eval_every: 100}"
