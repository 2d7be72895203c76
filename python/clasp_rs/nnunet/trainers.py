"""nnU-Net trainer classes shipped with clasp-rs.

Importing this module imports torch and nnunetv2 (the classes derive from nnU-Net's
trainer); nothing in ``clasp_rs`` imports it until a trainer is needed.

nnU-Net finds trainers by class name only inside its own package, or in the folders listed in
the ``nnUNet_extTrainer`` environment variable (nnunetv2 >= 2.6).
``external_trainer_folder()`` is such a folder for the classes here, so that nnU-Net's own
commands can use them too::

    export nnUNet_extTrainer=$(python -c \
        "import clasp_rs.nnunet as n; print(n.external_trainer_folder())")
    nnUNetv2_train 901 3d_fullres 0 -tr nnUNetTrainer_clasp_tiny -device cpu
"""

from __future__ import annotations

import copy

from clasp_rs._optional import import_nnunetv2, import_torch

import_torch()
import_nnunetv2()

import torch  # noqa: E402
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import (  # noqa: E402
    nnUNetTrainerNoDA,
)
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import (  # noqa: E402
    ConfigurationManager,
    PlansManager,
)

__all__ = ["TRAINERS", "nnUNetTrainer_clasp_cpu", "nnUNetTrainer_clasp_tiny"]


def _network(
    configuration_manager: ConfigurationManager,
    num_input_channels: int,
    num_output_channels: int,
    enable_deep_supervision: bool,
    base_features: int,
    max_features: int,
) -> torch.nn.Module:
    """The planned network with ``min(base_features * 2**stage, max_features)`` channels per
    stage instead of the plans' widths (topology, kernels and strides as planned)."""
    kwargs = copy.deepcopy(configuration_manager.network_arch_init_kwargs)
    kwargs["features_per_stage"] = [
        min(base_features * 2**i, max_features) for i in range(len(kwargs["features_per_stage"]))
    ]
    return get_network_from_plans(
        configuration_manager.network_arch_class_name,
        kwargs,
        configuration_manager.network_arch_init_kwargs_req_import,
        num_input_channels,
        num_output_channels,
        allow_init=True,
        deep_supervision=enable_deep_supervision,
    )


class nnUNetTrainer_clasp_tiny(nnUNetTrainerNoDA):  # noqa: N801 - nnU-Net's naming scheme
    """A trainer that finishes in seconds on a CPU, for tests and smoke runs.

    Two epochs of four iterations (two validation iterations each), a checkpoint after each
    epoch, no data augmentation and no test-time mirroring (from ``nnUNetTrainerNoDA``), and
    the planned U-Net topology with at most ``MAX_FEATURES`` channels per stage (starting at
    ``BASE_FEATURES``). Its models
    are useless for segmentation; they exercise every step of training and inference.
    """

    NUM_EPOCHS = 2
    ITERATIONS_PER_EPOCH = 4
    VAL_ITERATIONS_PER_EPOCH = 2
    BASE_FEATURES = 8
    MAX_FEATURES = 32

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 - nnU-Net's signature
    ):
        # nnU-Net stores the constructor's arguments by inspecting this exact signature.
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.NUM_EPOCHS
        self.num_iterations_per_epoch = self.ITERATIONS_PER_EPOCH
        self.num_val_iterations_per_epoch = self.VAL_ITERATIONS_PER_EPOCH
        # A checkpoint_latest.pth after every epoch (nnU-Net: every 50), so that an
        # interrupted training has something to continue from, as a long one would.
        self.save_every = 1

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> torch.nn.Module:
        # A staticmethod in nnU-Net (the predictor calls it on the class), so the class
        # constants are read from this class explicitly.
        del plans_manager
        cls = nnUNetTrainer_clasp_tiny
        return _network(
            configuration_manager,
            num_input_channels,
            num_output_channels,
            enable_deep_supervision,
            cls.BASE_FEATURES,
            cls.MAX_FEATURES,
        )


class nnUNetTrainer_clasp_cpu(nnUNetTrainer_clasp_tiny):  # noqa: N801 - nnU-Net's naming scheme
    """A trainer that learns the bundled CT organs on a small CPU in minutes per fold.

    Stock nnU-Net training (planned U-Net topology, Dice + cross-entropy loss with deep
    supervision, SGD with the poly schedule, the ``ignore`` label for partial annotation)
    shortened for benchmarks without a GPU: ``NUM_EPOCHS`` epochs of
    ``ITERATIONS_PER_EPOCH`` iterations, ``VAL_ITERATIONS_PER_EPOCH`` validation iterations
    (they only feed the progress log), no data augmentation and no test-time mirroring, and
    the planned stages at half nnU-Net's widths (``BASE_FEATURES`` = 16 up to
    ``MAX_FEATURES`` = 320 channels instead of 32 up to 320). Measured on the bundled CT set
    with full annotation: see ``benches/RESULTS.md``.
    """

    NUM_EPOCHS = 40
    ITERATIONS_PER_EPOCH = 25
    VAL_ITERATIONS_PER_EPOCH = 5
    BASE_FEATURES = 16
    MAX_FEATURES = 320

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> torch.nn.Module:
        del plans_manager
        cls = nnUNetTrainer_clasp_cpu
        return _network(
            configuration_manager,
            num_input_channels,
            num_output_channels,
            enable_deep_supervision,
            cls.BASE_FEATURES,
            cls.MAX_FEATURES,
        )


TRAINERS: dict[str, type] = {
    cls.__name__: cls for cls in (nnUNetTrainer_clasp_tiny, nnUNetTrainer_clasp_cpu)
}
"""The trainer classes of this module by name."""
