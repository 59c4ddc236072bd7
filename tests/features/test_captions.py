"""A tiny random Florence-2 of the real architecture, saved and loaded by path: its captions equal the
processor's own recipe (one image, `generate`, decode, `post_process_generation`) frame by frame, batched or
not, greedy or beam; what is not a native Florence-2, or not a caption task, is refused."""

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file
from vidprobe.features.backbones import save_tiny_videomae
from vidprobe.features.captions import TASKS, Captioner, save_tiny_florence2
from vidprobe.features.errors import FeatureConfigError


@pytest.fixture(scope="module")
def florence(tmp_path_factory):
    return save_tiny_florence2(tmp_path_factory.mktemp("florence") / "tiny-florence", seed=1)


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
        rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
        np.zeros((48, 64, 3), np.uint8),
    ]


def direct_caption(path, frame: np.ndarray, task: str, **generate) -> str:
    """Florence-2's documented recipe, one image at a time."""
    processor = transformers.AutoProcessor.from_pretrained(path)
    net = transformers.Florence2ForConditionalGeneration.from_pretrained(path).eval()
    image = Image.fromarray(frame)
    inputs = processor(text=task, images=image, return_tensors="pt")
    with torch.no_grad():
        ids = net.generate(**inputs, do_sample=False, **generate)
    text = processor.batch_decode(ids, skip_special_tokens=False)[0]
    return processor.post_process_generation(text, task=task, image_size=image.size)[task]


def test_the_tiny_florence2_loads_by_path_as_the_real_one(florence):
    processor = transformers.AutoProcessor.from_pretrained(florence)
    assert type(processor).__name__ == "Florence2Processor"
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    assert "pure_text" in processor.post_processor_config
    tokenizer = processor.tokenizer
    assert [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id] == [0, 1, 2]  # BART's layout
    assert len(tokenizer("<loc_999><od>", add_special_tokens=False).input_ids) == 2
    captioner = Captioner(str(florence))
    assert type(captioner.net).__name__ == "Florence2ForConditionalGeneration"
    assert captioner.weights.startswith(f"{florence}@")


@pytest.mark.parametrize("task,beams", [("<CAPTION>", 1), ("<CAPTION>", 2), ("<MORE_DETAILED_CAPTION>", 1)])
def test_captions_equal_the_processors_own_recipe(florence, task, beams):
    generate = dict(max_new_tokens=8, min_new_tokens=3, num_beams=beams)
    ours = Captioner(str(florence), task, **generate).caption(frames(), batch_size=2)  # a full batch and a short one
    direct = [direct_caption(florence, f, task, **generate) for f in frames()]
    assert ours == direct
    assert all(ours) and len(set(ours)) > 1  # text, and the image matters: a shuffled batch would show


def test_the_same_seed_saves_the_same_model(tmp_path, florence):
    again = save_tiny_florence2(tmp_path / "again", seed=1)
    other = save_tiny_florence2(tmp_path / "other", seed=2)
    ours, same, different = (Captioner(str(p), max_new_tokens=6) for p in (florence, again, other))
    assert ours.weights.split("@")[1] == same.weights.split("@")[1] != different.weights.split("@")[1]
    assert ours.caption(frames()) == same.caption(frames())


def test_only_caption_tasks(florence):
    assert TASKS == ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
    with pytest.raises(FeatureConfigError, match="caption.task: '<OD>' is not a caption task"):
        Captioner(str(florence), "<OD>")


def test_what_is_not_a_florence2_is_refused_with_how_to_pass_one(tmp_path):
    with pytest.raises(FeatureConfigError, match=r"caption.model=/path/to/florence-2"):
        Captioner(str(tmp_path / "nowhere"))
    videomae = save_tiny_videomae(tmp_path / "videomae")  # from_pretrained alone would load it as a random Florence-2
    with pytest.raises(FeatureConfigError, match="caption.model: could not load Florence-2 .* 'videomae' model"):
        Captioner(str(videomae))
    state = save_tiny_florence2(tmp_path / "renamed", seed=1) / "model.safetensors"
    save_file({f"old.{k}": v for k, v in load_file(state).items()}, state)  # a layout the native class does not read
    with pytest.raises(FeatureConfigError, match="weights are not in the checkpoint .* not a transformers-native"):
        Captioner(str(state.parent))
