"""Comparison pipelines for the evaluation tables (ground segment only; never flown).

- ``HandCrafted``: an IM2GPS-style global descriptor (Hays & Efros 2008): a 16x16 tiny grey image
  (standardised) and an L*a*b* colour histogram (4x6x6 bins, square-rooted), each L2-normalised and
  concatenated (544-D), searched exactly by brute-force inner product.
- ``heavy_standin_onnx``: a ResNet-50-sized CNN at 320 px with 4096-D output, random weights, exported
  to ONNX: an EarthLoc-like pipeline stand-in for *cost only* (latency and memory), never for accuracy.
"""
from __future__ import annotations

import cv2
import numpy as np

TINY_PX = 16
LAB_BINS = (4, 6, 6)


def handcrafted_descriptor(frame_bgr: np.ndarray) -> np.ndarray:
    img = frame_bgr if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    tiny = cv2.resize(grey, (TINY_PX, TINY_PX), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    tiny = (tiny - tiny.mean()) / (tiny.std() + 1e-6)
    tiny /= np.linalg.norm(tiny) + 1e-12
    lab = cv2.cvtColor(cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2LAB)
    valid = (img.max() > 0)
    hist = cv2.calcHist([lab], [0, 1, 2], None, list(LAB_BINS), [0, 256, 0, 256, 0, 256]).ravel()
    hist = np.sqrt(hist / (hist.sum() + 1e-12)) if valid else hist
    hist /= np.linalg.norm(hist) + 1e-12
    return np.concatenate([tiny, hist]).astype(np.float32) / np.sqrt(2.0)


class HandCrafted:
    """Exact kNN over hand-crafted reference descriptors."""

    def __init__(self, ref_images):
        self.refs = np.stack([handcrafted_descriptor(im) for im in ref_images])

    def search(self, frame_bgr: np.ndarray, k: int):
        s = self.refs @ handcrafted_descriptor(frame_bgr)
        idx = np.argsort(-s)[:k]
        return idx, s[idx]


def heavy_standin_onnx(path, input_px: int = 320, dim: int = 4096, seed: int = 0) -> None:
    """Write a ResNet-50-sized encoder (bottleneck blocks 3-4-6-3, 2048 channels, 4096-D head) to ONNX."""
    import torch
    from torch import nn
    torch.manual_seed(seed)

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(True),
                nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(True),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, dim)).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, input_px, input_px),), str(path), input_names=["image"],
                      output_names=["descriptor"], opset_version=17, dynamo=False)
