"""Captions as a modality: an image-to-text model (Florence-2 through transformers) describes sampled frames.

`Captioner(model, task)` loads `Florence2ForConditionalGeneration` and its processor from a hub id or local
folder (the processor's own image settings and task prompts: `<CAPTION>`, `<DETAILED_CAPTION>`,
`<MORE_DETAILED_CAPTION>`), and `caption(frames)` returns one string per RGB frame: greedy or beam
decoding, special tokens dropped, as the processor's post-processing of caption tasks does.
`save_tiny_florence2` builds a tiny random Florence-2 of the real architecture with a working processor
(tests): its captions are gibberish, but deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from features.backbones.base import load_failure, load_pretrained, quiet_transformers
from features.errors import FeatureConfigError

TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


class Captioner:
    def __init__(self, model: str, task: str = "<CAPTION>", max_new_tokens: int = 40, num_beams: int = 1,
                 min_new_tokens: int = 0, device: str = "cpu"):
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        if task not in TASKS:
            raise FeatureConfigError(f"caption.task: {task!r} is not a caption task; choose from {', '.join(TASKS)}")
        self.net, self.weights = load_pretrained(Florence2ForConditionalGeneration, model, "Florence-2")
        quiet_transformers()
        try:
            self.processor = AutoProcessor.from_pretrained(model)
        except (OSError, ValueError, ImportError) as err:
            raise load_failure(model, "Florence-2 processor", err) from None
        self.net.eval().requires_grad_(False).to(device)
        self.task, self.device = task, device
        self.generate = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams,
                             do_sample=False)

    def caption(self, frames: list[np.ndarray], batch_size: int = 8) -> list[str]:
        """One caption per (H, W, 3) uint8 RGB frame."""
        from PIL import Image

        out = []
        for i in range(0, len(frames), batch_size):
            images = [Image.fromarray(f) for f in frames[i : i + batch_size]]
            inputs = self.processor(text=[self.task] * len(images), images=images, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                ids = self.net.generate(**inputs, **self.generate)
            out += [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out


def save_tiny_florence2(directory: Path, seed: int = 0, size: int = 64) -> Path:
    """A tiny randomly initialised Florence-2 (2-stage DaViT, 1+1-layer BART) with a character-level BART
    tokenizer and the Pil image processor, saved with `save_pretrained` so the real loading path reads it."""
    import transformers

    from features.backbones import byte_level_vocab

    quiet_transformers()
    torch.manual_seed(seed)
    vocab = byte_level_vocab()
    for special in ("<s>", "<pad>", "</s>", "<unk>", "<mask>", "<image>"):
        vocab.setdefault(special, len(vocab))
    tokenizer = transformers.BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    vision = dict(depths=(1, 1), patch_size=(7, 3), patch_stride=(4, 2), patch_padding=(3, 1),
                  patch_prenorm=(False, True), embed_dim=(16, 32), num_heads=(2, 2), num_groups=(2, 2), window_size=2,
                  projection_dim=32, drop_path_rate=0.0)
    text = dict(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id)
    config = transformers.Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)
    net = transformers.Florence2ForConditionalGeneration(config).eval()
    tokens = net.get_image_features(pixel_values=torch.zeros(1, 3, size, size))
    tokens = getattr(tokens, "pooler_output", tokens).shape[1]  # image tokens the text encoder receives
    images = transformers.CLIPImageProcessorPil(size={"height": size, "width": size}, do_center_crop=False,
                                                image_seq_length=tokens, image_mean=[0.485, 0.456, 0.406],
                                                image_std=[0.229, 0.224, 0.225])
    net.save_pretrained(directory)
    transformers.Florence2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(directory)
    return Path(directory)
