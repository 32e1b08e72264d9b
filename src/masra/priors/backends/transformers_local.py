"""Chat backend running a local transformers model, for users with a GPU and no inference server.

Two kinds of model:

- vision-language models (Qwen2.5-VL class: any checkpoint whose config has a ``vision_config``), loaded
  with ``AutoProcessor`` + ``AutoModelForImageTextToText``; the data-URL images of a request are decoded
  with PIL and placed where the processor's chat template puts its image tokens;
- text-only causal LMs, also from a GGUF file (``model`` = the ``.gguf`` path, or a folder plus
  ``gguf_file``; transformers dequantises it on load). Image parts are dropped (``supports_images`` False).

All model work happens on one dedicated worker thread, so requests run one at a time (the model is not
thread-safe, and one GPU gains nothing from interleaving) while waiting requests queue without holding
threads of the event loop's default pool. A request whose caller gives up (timeout, cancellation) stops
generating at the next token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from masra.priors.backends.base import BackendError, message_parts, text_only_messages

log = logging.getLogger(__name__)


def decode_data_url(url: str) -> Any:
    """A ``data:image/...;base64,...`` URL as an RGB PIL image; BackendError for anything else."""
    from PIL import Image, UnidentifiedImageError

    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise BackendError(f"the local backend takes base64 image data URLs only, got {url[:40]!r}", retryable=False)
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        return image.convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError) as err:
        raise BackendError(f"undecodable image in the request: {err}", retryable=False) from None


def multimodal_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages in the processor chat-template layout (``{"type": "image"}`` placeholders) and the decoded
    images in order of appearance."""
    converted, images = [], []
    for message in messages:
        content = []
        for part in message_parts(message.get("content", "")):
            if part.get("type") == "text":
                content.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "image_url":
                images.append(decode_data_url(part["image_url"]["url"]))
                content.append({"type": "image"})
        converted.append({"role": message["role"], "content": content})
    return converted, images


def _auto_dtype(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class TransformersBackend:
    """``TransformersBackend("Qwen/Qwen2.5-VL-7B-Instruct")`` (a local folder or a model already in the
    Hugging Face cache) or ``TransformersBackend("/models/SmolLM2-135M-Instruct.Q4_1.gguf")``.

    ``device`` None picks CUDA when present (spread over all visible GPUs with ``device_map="auto"``),
    else CPU; ``dtype`` "auto" is bf16 (fp16 on GPUs without bf16) on CUDA and fp32 on CPU. The weights
    load on the first request, or when ``load()`` is called. ``processor_kwargs`` go to
    ``AutoProcessor.from_pretrained`` (e.g. ``{"max_pixels": 448 * 448}`` for Qwen2.5-VL).
    """

    name = "transformers"

    def __init__(
        self,
        model: str | Path,
        *,
        gguf_file: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        model_name: str | None = None,
        processor_kwargs: dict[str, Any] | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = Path(model).expanduser()
        if gguf_file is None and path.suffix == ".gguf":
            if not path.is_file():
                raise BackendError(f"GGUF file not found: {path}", retryable=False)
            path, gguf_file = path.parent, path.name
        self._source = str(path) if path.exists() else str(model)
        self._gguf_file = gguf_file
        self._device = device
        self._dtype = dtype
        self._processor_kwargs = dict(processor_kwargs or {})
        # The name recorded in the cache: a hub id as given, a local folder or GGUF file by its name.
        local_name = Path(gguf_file).stem if gguf_file else path.name
        self.model = model_name or (local_name if path.exists() else str(model))
        self.supports_images = gguf_file is None and self._has_vision_tower()
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._executor: ThreadPoolExecutor | None = None  # made on the first request, gone after aclose()
        self._load_lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None  # (model, processor or tokenizer)
        self._warned_images = False

    def _has_vision_tower(self) -> bool:
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(self._source)
        except (OSError, ValueError) as err:
            raise BackendError(f"cannot load the model config of {self._source!r}: {err}", retryable=False) from None
        return getattr(config, "vision_config", None) is not None

    def load(self) -> None:
        """Load the weights now (otherwise the first request does); BackendError if they cannot be loaded."""
        with self._load_lock:
            if self._loaded is None:
                try:
                    self._loaded = self._load_vlm() if self.supports_images else self._load_text_lm()
                except (OSError, ValueError, ImportError) as err:
                    raise BackendError(f"cannot load {self._source!r}: {err}", retryable=False) from None

    def _placement(self) -> tuple[dict[str, Any], str | None]:
        """from_pretrained kwargs and the device to move the model to (None when device_map places it)."""
        import torch

        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtypes = {
            "auto": _auto_dtype(device),
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
            "float32": torch.float32,
        }
        if self._dtype not in dtypes:
            raise ValueError(f"unknown dtype {self._dtype!r} (auto, bfloat16, float16 or float32)")
        dtype = dtypes[self._dtype]
        if self._device is None and device == "cuda":
            return {"dtype": dtype, "device_map": "auto"}, None
        return {"dtype": dtype}, device

    def _load_vlm(self) -> tuple[Any, Any]:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        kwargs, device = self._placement()
        processor = AutoProcessor.from_pretrained(self._source, **self._processor_kwargs)
        model = AutoModelForImageTextToText.from_pretrained(self._source, **kwargs)
        return (model.to(device) if device else model).eval(), processor

    def _load_text_lm(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs, device = self._placement()
        tokenizer = AutoTokenizer.from_pretrained(self._source, gguf_file=self._gguf_file)
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template (a base model, not an instruct/chat model)")
        model = AutoModelForCausalLM.from_pretrained(self._source, gguf_file=self._gguf_file, **kwargs)
        return (model.to(device) if device else model).eval(), tokenizer

    async def chat(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> str:
        cancelled = threading.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="masra-transformers")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._reply, messages, max_tokens, temperature, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # stops a running generation at its next token
            raise

    def _reply(
        self, messages: list[dict[str, Any]], max_tokens: int, temperature: float, cancelled: threading.Event
    ) -> str:
        import torch

        self.load()
        model, processor = self._loaded
        try:
            inputs = self._inputs(messages, processor).to(model.device)
            prompt_length = inputs["input_ids"].shape[1]
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    **_sampling(temperature),
                    max_new_tokens=max_tokens,
                    pad_token_id=_pad_token_id(processor),
                    stopping_criteria=[_Cancelled(cancelled)],
                )
        except torch.cuda.OutOfMemoryError as err:
            torch.cuda.empty_cache()
            raise BackendError(f"out of memory: {str(err)[:200]}", retryable=True) from None
        except BackendError:
            raise
        except (RuntimeError, ValueError, TypeError, KeyError) as err:
            raise BackendError(f"generation failed: {type(err).__name__}: {err}", retryable=False) from None
        new_tokens = output[0, prompt_length:]  # [T_new]
        self.usage["prompt_tokens"] += int(prompt_length)
        self.usage["completion_tokens"] += int(new_tokens.shape[0])
        tokenizer = getattr(processor, "tokenizer", processor)
        return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    def _inputs(self, messages: list[dict[str, Any]], processor: Any) -> Any:
        """Tokenised prompt (and pixel values) for one request, ready for ``generate``."""
        from transformers import BatchEncoding

        if self.supports_images:
            chat, images = multimodal_messages(messages)
            prompt = processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            return processor(text=[prompt], images=images or None, return_tensors="pt")
        chat, dropped = text_only_messages(messages)
        if dropped and not self._warned_images:
            log.warning("%s is a text-only model: image parts of the requests are dropped", self.model)
            self._warned_images = True
        prompt = processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        encoded = processor(prompt, return_tensors="pt", add_special_tokens=False)
        # Only what a causal LM takes (BERT-style tokenizers add token_type_ids).
        return BatchEncoding({key: encoded[key] for key in ("input_ids", "attention_mask")})

    async def aclose(self) -> None:
        """Release the model (and its GPU memory) and the worker thread; a later request loads them again."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        self._loaded = None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _sampling(temperature: float) -> dict[str, Any]:
    """Generation flags for a temperature: 0 means greedy (the model's own sampling defaults switched off)."""
    if temperature > 0:
        return {"do_sample": True, "temperature": float(temperature)}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def _pad_token_id(processor: Any) -> int | None:
    tokenizer = getattr(processor, "tokenizer", processor)
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


class _Cancelled:
    """A stopping criterion that ends generation once the caller has given up on the request."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device)
