"""The active-learning loop around stock nnU-Net v2: ``clasp-rs init/run/annotate/report``.

An *experiment* is a folder that records one active-learning run:

```
EXPERIMENT/
  experiment.json        what init decided: source dataset, split, patch size, budgets, ...
  state.json             which steps are done (rewritten atomically after every step)
  loop_000.json          the starting budget; loop_NNN.json: the query made after loop NNN-1
  ground_truth/          full labels of the pool cases (simulation, FG statistics)
  loops/loop_NNN/        everything training loop NNN produced, never overwritten:
      model/             the nnU-Net model folder (plans.json, dataset.json, fold_K/)
      test_probabilities/fold_K/<case>.npz, pool_probabilities/fold_K/<case>.npz
      evaluation.json    Dice per class and mean of the fold ensemble on the test split
      annotated.json     annotated patches and voxels up to this loop
  to_annotate/loop_NNN/  (human annotation) the current label files of the queried cases
```

and a new nnU-Net raw dataset ``$nnUNet_raw/DatasetYYY_Name`` whose ``labelsTr`` carry the
ground truth inside annotated patches and the ``ignore`` value elsewhere; the test cases are
in its ``imagesTs``/``labelsTs``.

Modules: :mod:`.experiment` (experiment.json and paths), :mod:`.state` (progress),
:mod:`.source` (the raw dataset init starts from), :mod:`.split`, :mod:`.autosize`,
:mod:`.starting_budget`, :mod:`.setup` (init), :mod:`.settings` (what run is asked),
:mod:`.tasks` (the steps on a LoopContext), :mod:`.querying` (the query steps, through
:mod:`clasp_rs.query`), :mod:`.driver` (run: order and record the steps),
:mod:`.annotation` and :mod:`.human` (a human's labels), :mod:`.metrics`, :mod:`.report`,
:mod:`.plots`. Label files are read and written by :mod:`clasp_rs.nnunet.labels`.
Nothing here imports torch or nnunetv2 until a step needs them.
"""
