#!/usr/bin/env bash
# The first clasp-rs study: ClaSP PE vs Random 66 % FG vs Random on the bundled CT set
# (tests/data/Dataset_clasp_ct: 12 CT slabs of 10-12 x 64 x 64 voxels, liver/spleen/kidney).
# See benches/RESULTS.md ("First study") for the settings, why, and the results.
#
#   benches/study_ct.sh [ROOT]      ROOT default /work/studies/ct
#
# Creates ROOT/{nnUNet_raw,nnUNet_preprocessed,nnUNet_results}, ROOT/study and ROOT/report.
# Running it again resumes the study where it stopped (finished steps are kept) and rewrites
# the report; every setting is fixed by the first run.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:-/work/studies/ct}
STRATEGIES=${STRATEGIES:-"clasp-pe random-fg66 random"}
SEEDS=${SEEDS:-"0 1 2"}
LOOPS=${LOOPS:-4}
TRAINER=${TRAINER:-nnUNetTrainer_clasp_cpu}
# Two experiments at once, one torch thread each: both cores busy without the slow-down of
# two threads in one process; at nice 19 they only take what others leave.
CONCURRENT=${CONCURRENT:-2}

export nnUNet_raw=$ROOT/nnUNet_raw nnUNet_preprocessed=$ROOT/nnUNet_preprocessed
export nnUNet_results=$ROOT/nnUNet_results
# Small shared CPU: augmentation and export in the training process, no compilation, and one
# torch thread (with 2 threads on 2 busy cores an epoch took 4-15x longer than alone).
export nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 nnUNet_compile=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} CLASP_RS_NUM_THREADS=${CLASP_RS_NUM_THREADS:-1}
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
if [ ! -d "$nnUNet_raw/Dataset900_clasp_ct" ]; then
    cp -r "$REPO/tests/data/Dataset_clasp_ct" "$nnUNet_raw/Dataset900_clasp_ct"
fi
if [ ! -f "$ROOT/study/study.json" ]; then
    # shellcheck disable=SC2086
    clasp-rs study init 900 "$ROOT/study" --strategies $STRATEGIES --seeds $SEEDS \
        --patch-size 4 16 16 --start-budget 8 --budget 12 --dataset-id 700
fi
date -u +"%Y-%m-%dT%H:%M:%SZ study run starts"
status=0
clasp-rs study run "$ROOT/study" --loops "$LOOPS" --trainer "$TRAINER" --folds 0 --device cpu \
    --max-concurrent "$CONCURRENT" || status=$?
date -u +"%Y-%m-%dT%H:%M:%SZ study run ends (status $status)"
# The report of whatever has finished (also after a failure).
clasp-rs study report "$ROOT/study" --out "$ROOT/report" --overwrite || true
exit "$status"
