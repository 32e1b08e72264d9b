"""Loss normalisers that make a DDP run equal to one process holding the whole global batch.

DDP averages gradients over its W ranks. A term written as ``sum / count`` on each rank therefore trains on
``mean_r(sum_r / count_r)``, which differs from ``sum_r sum_r / sum_r count_r`` whenever ranks hold different
counts (windows, valid clips, captioned clips). Dividing by the mean count over the ranks instead,
``sum_r / (sum_r' count_r' / W)``, gives exactly the single-process gradient (DETR's ``num_boxes`` all-reduce).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def mean_over_ranks(count: torch.Tensor) -> torch.Tensor:
    """``count`` averaged over the DDP ranks (a detached float tensor); ``count`` itself in one process.

    Every rank must call this the same number of times in the same order (it is a collective), so callers
    compute the count before any rank-dependent early return.
    """
    count = count.detach().float()
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return count
    total = count.clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()
