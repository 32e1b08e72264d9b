"""lighthouse's own YouTube Highlights evaluator, transcribed literally for the tests (not used by the package).

Source: line/lighthouse, commit d095eaa552cecef240897a8b750306b3b2a08740, training/evaluate.py,
``compute_hl_results`` (its ``opt.dset_name == 'youtube_highlight'`` branch: the per-video full-ranking
trapezoid AP, then the final ``np.mean`` / ``round(mean_ap, 5)``). Only the data loader, the model call and the
loss bookkeeping around the loop are left out (``preds`` / ``labels`` stand for the model's saliency scores and
``meta['label']``); the loop body is unchanged, including its ``continue`` for a video without positive clips,
which leaves that video out of ``video_ap_collected`` (the ``video_ap.append(0)`` before it is never used).

Copyright LY Corporation (the source header reads "Copyright $today.year LY Corporation").
Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance
with the License. You may obtain a copy of the License at https://www.apache.org/licenses/LICENSE-2.0.
Unless required by applicable law or agreed to in writing, software distributed under the License is
distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and limitations under the License.
Changes from the original: the function's signature and inputs (above); the loop body is as in the source.

The source file also carries Moment-DETR's notice (https://github.com/jayleicn/moment_detr):
Copyright (c) 2021 Jie Lei. Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions: The above copyright notice and this permission notice shall be
included in all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT
WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE
LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

import numpy as np
import torch


def compute_hl_results_youtube(preds, labels):
    """preds: one 1-d tensor of saliency scores per video; labels: the raw [n_clips, 1] 0/1 labels (one domain)."""
    video_ap_collected = []
    topk = 5 # top-5 map

    for meta_label, pred in zip(labels, preds):
        label = meta_label # raw label
        video_ap = []

        cur_pred = pred[:len(label)].cpu()
        inds = torch.argsort(cur_pred, descending=True, dim=-1)
        cur_label = torch.Tensor(label).squeeze()[inds].tolist()
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

        video_ap.append(float(ap))

        video_ap_collected.append(video_ap)

    mean_ap = np.mean(video_ap_collected)
    submmission = dict(mAP=round(mean_ap, 5))

    return submmission
