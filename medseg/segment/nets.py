"""The CC networks (MONAI): AttentionUnet by default, SwinUNETR or UNETR as ViT-encoder options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class ModelConfig:
    name: Literal["attention_unet", "swin_unetr", "unetr"] = "attention_unet"
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.0
    feature_size: int = 24  # SwinUNETR / UNETR width
    out_channels: int = 2  # background, corpus callosum


def build_model(cfg: ModelConfig, image_size: int) -> torch.nn.Module:
    """A 2D network: 1 input channel (normalised image) -> ``out_channels`` logits."""
    if cfg.name == "attention_unet":
        from monai.networks.nets import AttentionUnet

        return AttentionUnet(spatial_dims=2, in_channels=1, out_channels=cfg.out_channels,
                             channels=cfg.channels, strides=cfg.strides, dropout=cfg.dropout)
    if cfg.name == "swin_unetr":
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(in_channels=1, out_channels=cfg.out_channels, feature_size=cfg.feature_size,
                         spatial_dims=2, drop_rate=cfg.dropout)
    from monai.networks.nets import UNETR

    return UNETR(in_channels=1, out_channels=cfg.out_channels, img_size=(image_size, image_size),
                 feature_size=cfg.feature_size, spatial_dims=2, hidden_size=192, mlp_dim=768,
                 num_heads=4, dropout_rate=cfg.dropout)


def size_multiple(cfg: ModelConfig) -> int:
    """Input sizes must be multiples of this (dynamic H/W export is valid only for them)."""
    if cfg.name == "attention_unet":
        return int(torch.tensor(cfg.strides).prod().item())
    return 32 if cfg.name == "swin_unetr" else 16
