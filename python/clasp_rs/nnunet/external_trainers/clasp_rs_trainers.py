"""Exposes clasp-rs's nnU-Net trainers to nnU-Net's search by name.

Point ``nnUNet_extTrainer`` at this folder (``clasp_rs.nnunet.external_trainer_folder()``):
nnU-Net then imports this module and finds the classes below by their names.
"""

from clasp_rs.nnunet.trainers import nnUNetTrainer_clasp_cpu, nnUNetTrainer_clasp_tiny

__all__ = ["nnUNetTrainer_clasp_cpu", "nnUNetTrainer_clasp_tiny"]
