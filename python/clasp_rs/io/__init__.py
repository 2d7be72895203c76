"""File formats clasp-rs reads and writes, one module each: :mod:`.probabilities` (nnU-Net
probability exports, ``.npy``/``.npz`` headers and fold readers), :mod:`.dataset_json`
(nnU-Net's ``dataset.json``), :mod:`.json_files` (small JSON files, atomically) and
:mod:`.parts` (part files of sharded queries). Loop files live with
:class:`~clasp_rs.Patch` in :mod:`clasp_rs.patches`.
"""
