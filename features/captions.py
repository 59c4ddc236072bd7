"""Captions as a modality: an image-to-text model (Florence-2 through transformers) describes sampled frames.

`Captioner(model, task)` loads `Florence2ForConditionalGeneration` and its processor from a hub id or local
folder (the processor's own image settings and task prompts: `<CAPTION>`, `<DETAILED_CAPTION>`,
`<MORE_DETAILED_CAPTION>`), and `caption(frames)` returns one string per RGB frame: greedy or beam
decoding, special tokens dropped, then the processor's own post-processing of caption tasks
(`post_process_generation`). A checkpoint whose weights do not all load into the transformers-native
Florence-2 (another model, or the original remote-code layout) is refused, never run half random.
`save_tiny_florence2` builds a tiny random Florence-2 of the real architecture with a working processor
(tests): its captions are gibberish, but deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from vidprobe.features.backbones.base import load_failure, load_pretrained, quiet_transformers
from vidprobe.features.errors import FeatureConfigError

TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
KEY = "caption.model"  # the config key a load failure names
# The tokens Florence-2 adds to BART's vocabulary (region, OCR and location tokens), special: decoding drops them.
FLORENCE2_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{i}>" for i in range(1000)]
    + [
        "<cap>",
        "</cap>",
        "<ncap>",
        "</ncap>",
        "<dcap>",
        "</dcap>",
        "<grounding>",
        "</grounding>",
        "<seg>",
        "</seg>",
        "<sep>",
        "<region_cap>",
        "</region_cap>",
        "<region_to_desciption>",
        "</region_to_desciption>",
        "<proposal>",
        "</proposal>",
        "<poly>",
        "</poly>",
        "<and>",
    ]
)
# What the converted checkpoints' processors carry: a parser per answer type (captions are `pure_text`).
POST_PROCESSOR_CONFIG = {
    "ocr": {"pattern": r"(.+?)" + r"<loc_(\d+)>" * 8, "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": []},
    **{
        kind: {}
        for kind in (
            "pure_text",
            "description_with_bboxes",
            "description_with_polygons",
            "polygons",
            "bboxes",
            "description_with_bboxes_or_polygons",
        )
    },
}


class StrictFlorence2:
    """`from_pretrained` that refuses a checkpoint whose weights do not all fit the native Florence-2."""

    @staticmethod
    def from_pretrained(model: str):
        from transformers import AutoConfig, Florence2ForConditionalGeneration

        kind = AutoConfig.from_pretrained(model).model_type
        if kind != "florence2":  # refused before a full-size random Florence-2 is built around its weights
            raise ValueError(f"its config.json is a {kind!r} model, not Florence-2")
        net, info = Florence2ForConditionalGeneration.from_pretrained(model, output_loading_info=True)
        missing = sorted(info["missing_keys"])
        if missing:  # from_pretrained would leave them random: another model, or the remote-code layout
            raise ValueError(
                f"{len(missing)} weights are not in the checkpoint (e.g. {missing[:2]}); it is not a "
                "transformers-native Florence-2 (converted: florence-community/Florence-2-base, -large)"
            )
        return net


def load_florence2(model: str):
    """(network, processor, weights identity) of a Florence-2 hub id or local folder; a failure names caption.model."""
    from transformers import AutoProcessor

    try:
        net, weights = load_pretrained(StrictFlorence2, model, "Florence-2")
        quiet_transformers()
        try:
            processor = AutoProcessor.from_pretrained(model)
        except (OSError, ValueError, ImportError) as err:
            raise load_failure(model, "Florence-2 processor", err) from None
    except FeatureConfigError as err:  # the loader names the video backbone's key; here it is caption.model
        raise FeatureConfigError(str(err).replace("backbone.model", KEY)) from None
    return net, processor, weights


class Captioner:
    def __init__(
        self,
        model: str,
        task: str = "<CAPTION>",
        max_new_tokens: int = 40,
        num_beams: int = 1,
        min_new_tokens: int = 0,
        device: str = "cpu",
    ):
        if task not in TASKS:
            raise FeatureConfigError(f"caption.task: {task!r} is not a caption task; choose from {', '.join(TASKS)}")
        self.net, self.processor, self.weights = load_florence2(model)
        self.net.eval().requires_grad_(False).to(device)
        self.task, self.device = task, device
        self.generate = dict(
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams, do_sample=False
        )

    def caption(self, frames: list[np.ndarray], batch_size: int = 8) -> list[str]:
        """One caption per (H, W, 3) uint8 RGB frame."""
        from PIL import Image

        out = []
        for i in range(0, len(frames), batch_size):
            images = [Image.fromarray(f) for f in frames[i : i + batch_size]]
            inputs = self.processor(text=[self.task] * len(images), images=images, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                ids = self.net.generate(**inputs, **self.generate)
            # special tokens dropped first: a batch pads its shorter answers, which the caption parser would keep
            out += [self.finish(t) for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out

    def finish(self, text: str) -> str:
        """The processor's post-processing of a caption task's answer (the parser's, where it has one)."""
        if "pure_text" in (self.processor.post_processor_config or {}):
            return self.processor.post_process_generation(text, task=self.task)[self.task]
        return text.replace("<s>", "").replace("</s>", "").strip()


def save_tiny_florence2(directory: Path, seed: int = 0, size: int = 64) -> Path:
    """A tiny randomly initialised Florence-2 (2-stage DaViT, 1+1-layer BART) with a character-level BART
    tokenizer holding Florence-2's special and location tokens, the Pil image processor and the caption
    parsers, saved with `save_pretrained` so the real loading path reads it."""
    import transformers
    from vidprobe.features.backbones import byte_level_vocab

    quiet_transformers()
    torch.manual_seed(seed)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # BART's ids, then the byte alphabet (no merges)
    vocab.update({c: 4 + i for c, i in byte_level_vocab().items() if i < 256})
    vocab["<mask>"] = len(vocab)
    tokenizer = transformers.BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens(FLORENCE2_TOKENS, special_tokens=True)
    # weights drawn wider than the usual 0.02: at that scale the decoder hardly sees the image (one caption for all)
    vision = dict(
        depths=(1, 1),
        patch_size=(7, 3),
        patch_stride=(4, 2),
        patch_padding=(3, 1),
        patch_prenorm=(False, True),
        embed_dim=(16, 32),
        num_heads=(2, 2),
        num_groups=(2, 2),
        window_size=2,
        projection_dim=32,
        drop_path_rate=0.0,
        initializer_range=0.5,
    )
    text = dict(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        init_std=0.5,
    )
    config = transformers.Florence2Config(
        vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id
    )
    net = transformers.Florence2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # most ids are location tokens, which caption answers drop: random weights would emit
        # little else, so their (tied) embeddings start at zero and a caption comes out as text
        net.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(list(FLORENCE2_TOKENS))] = 0.0
    tokens = net.get_image_features(pixel_values=torch.zeros(1, 3, size, size))
    tokens = getattr(tokens, "pooler_output", tokens).shape[1]  # image tokens the text encoder receives
    images = transformers.CLIPImageProcessorPil(
        size={"height": size, "width": size},
        do_center_crop=False,
        image_seq_length=tokens,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    net.save_pretrained(directory)
    transformers.Florence2Processor(
        image_processor=images, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    ).save_pretrained(directory)
    return Path(directory)
