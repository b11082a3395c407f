"""Per-kernel GPU time of one training epoch slice, through torch.profiler (CUPTI sees every
kernel in the process, fastconv's included). Eager steps (no CUDA graph) so kernels are named.

    FASTCONV_CUDA_GRAPHS=0 python tools/profile_gpu_step.py lenet5 64
"""
import os
import sys

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from fastconv import models, optimizers

name = sys.argv[1] if len(sys.argv) > 1 else "lenet5"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
steps = 50
rng = np.random.default_rng(0)
x = rng.random((batch * steps, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, batch * steps)
model = models.lenet5(classic=False, seed=0) if name == "lenet5" else models.vgg_small(seed=0)
model.compile(optimizers.Adam(1e-3), metrics=["accuracy"])
model.fit(x, y, epochs=1, batch_size=batch, verbose=0, device="cuda")  # warm-up
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0, device="cuda")
    torch.cuda.synchronize()
print(f"{name} batch {batch}, {steps} steps, graphs={os.environ.get('FASTCONV_CUDA_GRAPHS', '1')}")
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))
