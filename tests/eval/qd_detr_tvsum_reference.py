"""QD-DETR's own TVSum evaluator, transcribed literally for the tests (not used by the package).

Source: wjun0830/QD-DETR, commit 56c63b2c75c5673dfe693f3ae9438f5fc1f1679a, qd_detr/inference.py,
``compute_hl_results`` (the per-video loop over the 20 annotators, its top-5 trapezoid AP, and the final
``np.mean`` / ``round(mean_ap, 5)``). Only the model call and loss bookkeeping around it are left out; the
loop body is unchanged. QD-DETR is MIT-licensed: Copyright (c) 2022 Anonymous; permission is granted to use,
copy and modify it provided this notice is kept.
"""

import numpy as np
import torch


def compute_hl_results_tvsum(preds, labels):
    """preds: one 1-d tensor of saliency scores per video; labels: the raw [n_clips, 20] annotator scores."""
    topk = 5 # top-5 map

    video_ap_collected = []
    for pred, label in zip(preds, labels):
        pred = pred

        video_ap = []
        # Follow the UMT code "https://github.com/TencentARC/UMT/blob/main/datasets/tvsum.py"
        for i in range(20):
            cur_pred = pred[:len(label)]
            inds = torch.argsort(cur_pred, descending=True, dim=-1)

            # video_id = self.get_video_id(idx)
            cur_label = torch.Tensor(label)[:, i]
            cur_label = torch.where(cur_label > cur_label.median(), 1.0, .0)

            cur_label = cur_label[inds].tolist()[:topk]

            # if (num_gt := sum(cur_label)) == 0:
            num_gt = sum(cur_label)
            if num_gt == 0:
                video_ap.append(0)
                continue

            hits = ap = rec = 0
            prc = 1

            for j, gt in enumerate(cur_label):
                hits += gt

                _rec = hits / num_gt
                _prc = hits / (j + 1)

                ap += (_rec - rec) * (prc + _prc) / 2
                rec, prc = _rec, _prc

            video_ap.append(ap)
        video_ap_collected.append(video_ap)

    mean_ap = np.mean(video_ap_collected)
    submmission = dict(mAP=round(mean_ap, 5))
    return submmission
