"""Adapters to other frameworks, each behind its own optional extra and imported only when
used (``import clasp_rs`` never loads them):

* :mod:`clasp_rs.adapters.torch_dataset`: :class:`~clasp_rs.adapters.torch_dataset.PatchDataset`,
  a ``torch.utils.data.Dataset`` of queried patches (image and label crops as MONAI-style
  dicts with ``roi_start`` / ``roi_end``); ``pip install 'clasp-rs[torch]'``, MONAI's
  transforms and ``DataLoader`` work on it with ``'clasp-rs[monai]'``.
* :mod:`clasp_rs.adapters.monailabel`: a MONAI Label scoring method that queries patches
  over the datastore's images and a strategy that serves them; ``'clasp-rs[monailabel]'``.
"""
