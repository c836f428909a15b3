#!/usr/bin/env bash
# VectorPOSE's Table 2 under the protocol (issue 12), from the repository root (runs/ is not committed);
# results.csv, table.md, ttest.csv, parameters.json and vp_ablation.png/.pdf were copied from runs/vpa/.
# It ran beside the label_efficiency_protocol run (about 46 min wall, sharing two cores), with the same data and
# fine-tuning recipe (200 steps).
# Rows: random (control), voxel, +boundary, +centre, +1corner, +4corners, +8corners (= VectorPOSE), all on one network;
# 5 seeds at 10 % labels on the same subsets; ttest.csv tests each row against random and each step against the row
# before it (the paper's monotone ablation), Holm-corrected across the table.
set -euo pipefail
mkdir -p runs/vpa
OMP_NUM_THREADS=1 .venv/bin/papermill nbs/experiments/vp_ablation.ipynb runs/vpa/executed.ipynb --cwd runs/vpa \
  -p out_dir . -p n_labelled 16 -p n_unlabelled 8 -p shape 96,80,64 -p phantom_spacing 4,4,4 \
  -p backbone cpu-small -p spacing 6,6,6 -p patch_size 32,32,32 -p pretrain_steps 300 -p finetune_steps 200 \
  -p ablations all -p include_random True -p label_fractions 0.1 -p seeds 0,1,2,3,4 \
  -y "seeds_at: {0.1: [0, 1, 2, 3, 4]}
hu_range: [-175, 250]
vectorpose_overrides: {shuffle_windows: 1000, bezier_points: 1000}
finetune_overrides: {flip_p: 0.0, lr: 0.003, eval_every: 100}"
