"""The active-learning loop around stock nnU-Net v2: ``clasp-rs init/run/annotate/report``.

An *experiment* is a folder that records one active-learning run:

```
EXPERIMENT/
  experiment.json        what init decided: source dataset, split, patch size, budgets, ...
  state.json             which steps are done (rewritten atomically after every step)
  .clasp_rs.lock         held by the one driver (run, annotate) working on the experiment
  logs/<step>.log        nnU-Net's output of each step
  loop_000.json          the starting budget; loop_NNN.json: the query made after loop NNN-1
  ground_truth/          full labels of the pool cases (simulation, FG statistics)
  loops/loop_NNN/        everything training loop NNN produced, never overwritten:
      model/             the nnU-Net model folder (plans.json, dataset.json, fold_K/)
      training/fold_K/   nnU-Net's results folder while fold K trains (moved into model/)
      parts/part_I_of_S/ a query shard: maps/ (score maps, removed after the merge), part.json
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
:mod:`.lock` (one driver per experiment), :mod:`.tasks` (the steps on a LoopContext),
:mod:`.querying` (prediction + maps and the query steps, through :mod:`clasp_rs.query`),
:mod:`.graph` (a loop as executor tasks), :mod:`.executors` (local, ray), :mod:`.driver`
(run: the lock, the graph, the records), :mod:`.progress`, :mod:`.step_log`,
:mod:`.cleanup`, :mod:`.annotation` and :mod:`.human` (a human's labels), :mod:`.report`,
:mod:`.plots` (the metrics are :mod:`clasp_rs.metrics`), :mod:`.study`, :mod:`.study_run`,
:mod:`.study_report` (campaigns of strategies × seeds). Label files are read and written by
:mod:`clasp_rs.nnunet.labels`.
Nothing here imports torch or nnunetv2 until a step needs them.
"""
