"""The CLIP encoder of video and query features, loaded with transformers from a hub name or a local folder.

An encoder is named by a spec ``clip:NAME_OR_PATH`` (e.g. ``clip:openai/clip-vit-base-patch32``, the backbone
of the QVHighlights CLIP features, or ``clip:/models/clip-b32`` for a folder written by ``save_pretrained``).

- Video: ``image_embeds`` = visual_projection(pooled image state), one row per clip frame [L, projection_dim]
  (what OpenAI CLIP's ``encode_image`` returns; QVHighlights' ``clip_features`` are these, 512-d for B/32).
- Query: ``last_hidden_state`` = the text tower's token states after its final LayerNorm, valid tokens only
  (SOT … EOT), no projection [N, width]; ``pooler_output`` = the EOT state through text_projection
  [projection_dim], as the anchors' ``clip_text_features`` (Moment-DETR's ``run_on_video`` ``encode_text``).

The weights fingerprint (sha256 over both projection matrices) identifies the model independently of where
it was loaded from, so a checkpoint can refuse features made by a different encoder.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from masra.errors import MasraError
from masra.features.clip_inputs import QueryFeatures, pixel_values, set_up_tokenizer, split_queries, token_ids

logger = logging.getLogger("masra.features")

ENCODER_KINDS = ("clip",)


@dataclass(frozen=True)
class EncoderSpec:
    kind: str  # "clip"
    source: str  # hub name or local folder

    @classmethod
    def parse(cls, spec: str) -> EncoderSpec:
        kind, sep, source = str(spec).partition(":")
        if not sep or not source.strip():
            raise MasraError(f"encoder spec {spec!r} is not of the form KIND:NAME_OR_PATH, e.g. "
                             "clip:openai/clip-vit-base-patch32", field="encoder")
        if kind not in ENCODER_KINDS:
            raise MasraError(f"unknown encoder kind {kind!r}; supported: {', '.join(ENCODER_KINDS)}",
                             field="encoder")
        return cls(kind, source.strip())

    def __str__(self) -> str:
        return f"{self.kind}:{self.source}"

    @property
    def is_local(self) -> bool:
        return Path(self.source).expanduser().is_dir()


def _missing_weights_message(spec: EncoderSpec, err: Exception) -> str:
    return (
        f"cannot load CLIP weights {spec.source!r} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
        "With no network, place the model in a local folder (config.json, model.safetensors, tokenizer files; "
        "written on a connected machine by CLIPModel.from_pretrained(NAME).save_pretrained(DIR) and "
        "CLIPTokenizer.from_pretrained(NAME).save_pretrained(DIR)) and pass --encoder clip:DIR, or put it in the "
        "Hugging Face cache (HF_HOME) under its hub name"
    )


class ClipEncoder:
    """A transformers CLIPModel + its tokenizer (a ``tokenizers.Tokenizer`` set up by
    masra.features.clip_inputs), in eval mode on one device."""

    def __init__(self, model: torch.nn.Module, tokenizer, spec: EncoderSpec, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device

    @classmethod
    def load(cls, spec: str | EncoderSpec, device: str | torch.device = "cpu") -> ClipEncoder:
        """Load with ``from_pretrained`` (a local folder, or a hub name from the cache / network)."""
        try:
            from safetensors import SafetensorError
            from transformers import AutoTokenizer, CLIPModel
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise MasraError("CLIP features need transformers: pip install 'masra[video]'", field="encoder") from None

        spec = spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)
        if spec.source.startswith(("/", ".", "~")) and not spec.is_local:
            raise MasraError("no such folder; it should hold the CLIP model written by save_pretrained "
                             "(config.json, model.safetensors, tokenizer files)", file=spec.source, field="encoder")
        source = str(Path(spec.source).expanduser()) if spec.is_local else spec.source
        hf_logging.disable_progress_bar()
        try:
            model = CLIPModel.from_pretrained(source)
            loaded = AutoTokenizer.from_pretrained(source)
        except SafetensorError as err:  # a weights file cut short or overwritten
            weights = Path(source) / "model.safetensors" if spec.is_local else spec.source
            raise MasraError(f"the weights file is damaged or incomplete ({str(err).splitlines()[0][:200]}); "
                             "copy or download it again", file=weights, field="encoder") from None
        except (OSError, ValueError) as err:
            raise MasraError(_missing_weights_message(spec, err), field="encoder") from None
        if not getattr(loaded, "is_fast", False):
            raise MasraError(f"{spec.source}: its tokenizer has no tokenizers (fast) version; masra tokenizes with "
                             "the tokenizers library (save the tokenizer with tokenizer.json)", field="encoder")
        # A copy of the fast tokenizer's backend, so that its truncation and padding settings stay ours.
        tokenizer = set_up_tokenizer(type(loaded.backend_tokenizer).from_str(loaded.backend_tokenizer.to_str()),
                                     loaded.pad_token_id, loaded.pad_token)
        return cls(model, tokenizer, spec, torch.device(device))

    @property
    def video_dim(self) -> int:
        return int(self.model.visual_projection.out_features)

    @property
    def text_dim(self) -> int:
        return int(self.model.text_projection.in_features)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) over the visual and text projection matrices (float32 bytes)."""
        digest = hashlib.sha256()
        for layer in (self.model.visual_projection, self.model.text_projection):
            digest.update(layer.weight.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    @torch.inference_mode()
    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames [n, S, S, 3] -> image embeddings [n, video_dim] float32."""
        pixels = torch.from_numpy(pixel_values(frames)).to(self.device)  # [n, 3, S, S]
        pooled = self.model.vision_model(pixel_values=pixels.to(self.model.dtype)).pooler_output  # [n, width]
        return self.model.visual_projection(pooled).float().cpu().numpy()  # [n, video_dim]

    @torch.inference_mode()
    def encode_queries(self, texts: Sequence[str]) -> list[QueryFeatures]:
        """Token states and pooled embedding of each text (see the module docstring)."""
        if not texts:
            return []
        ids, mask = token_ids(self.tokenizer, texts)
        out = self.model.text_model(input_ids=torch.from_numpy(ids).to(self.device),
                                    attention_mask=torch.from_numpy(mask).to(self.device))
        states = out.last_hidden_state.float()  # [n, T, width], after the final LayerNorm
        pooled = self.model.text_projection(out.pooler_output).float()  # [n, projection_dim]
        return split_queries(states.cpu().numpy(), pooled.cpu().numpy(), mask)


def check_encoder_identity(
    recorded: str | None, recorded_fingerprint: str | None, encoder: ClipEncoder, *, where: str
) -> None:
    """Refuse an encoder that is not the one recorded for a model's training features.

    With a recorded fingerprint the weights decide (a local copy of the recorded model passes). Without one
    (e.g. a converted QD-DETR checkpoint) the hub names must match; a local folder cannot be verified and
    is accepted with a warning.
    """
    if recorded is None:
        logger.warning("%s does not record the encoder of its training features; using %s unverified",
                       where, encoder.spec)
        return
    recorded_spec = EncoderSpec.parse(recorded)
    if recorded_spec.kind != encoder.spec.kind:
        raise MasraError(f"{where} was trained on {recorded} features; {encoder.spec} is a different encoder kind",
                         field="encoder")
    if recorded_fingerprint is not None:
        if encoder.fingerprint != recorded_fingerprint:
            raise MasraError(
                f"{where} was trained on features of {recorded} (weights fingerprint {recorded_fingerprint}); "
                f"{encoder.spec} has fingerprint {encoder.fingerprint}: a different model. Use the recorded "
                "encoder's weights (a local copy of them works)", field="encoder")
        return
    if encoder.spec.source == recorded_spec.source:
        return
    if encoder.spec.is_local:
        logger.warning("%s records %s without a weights fingerprint; cannot verify that %s holds that model",
                       where, recorded, encoder.spec.source)
        return
    raise MasraError(f"{where} was trained on features of {recorded}; {encoder.spec} is a different model",
                     field="encoder")
