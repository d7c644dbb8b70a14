"""Vision-encoder and prefill time per image: puyu's InternVL vs transformers' InternVLForConditionalGeneration.

Both models hold the same random weights (transformers writes the folder, puyu loads it), run fp32 on the CPU
with `torch.inference_mode`, and see the same pixel values and prompt. Timed, alternating ours and theirs,
median of `--repeats`:
* encoder: one image's tiles → projected image embeddings (`get_image_features` in transformers);
* prefill: the encoder plus one forward over the prompt (text + the image's placeholder run), last logits only.

    .venv/bin/python benchmarks/vlm_encoder.py --shape tiny
    .venv/bin/python benchmarks/vlm_encoder.py --shape 1b --tiles 1 --repeats 3

Shapes: tiny (2-layer ViT on 56-pixel tiles, 2-layer Qwen2 of width 64); 1b (InternVL2-1B's: InternViT-300M,
448-pixel tiles of 256 tokens, Qwen2-0.5B).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import transformers

from puyu.model.vision import load_vlm

SHAPES = {
    "tiny": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=56),
        text=dict(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2),
    ),
    "1b": dict(
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=448, attention_bias=True),
        text=dict(vocab_size=151655, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2),
    ),
}  # fmt: skip


def build(shape: str) -> transformers.InternVLForConditionalGeneration:
    spec = SHAPES[shape]
    size = spec["vision"]["image_size"]
    config = transformers.InternVLConfig(
        vision_config=dict(spec["vision"], patch_size=14),
        text_config=dict(spec["text"], model_type="qwen2", max_position_embeddings=4096, tie_word_embeddings=True),
        image_token_id=spec["text"]["vocab_size"] - 1,
        image_seq_length=(size // 28) ** 2,
    )
    torch.manual_seed(0)
    return transformers.InternVLForConditionalGeneration(config).eval()


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="tiny")
    parser.add_argument("--tiles", type=int, default=5, help="tiles per image (e.g. 2x2 grid + thumbnail)")
    parser.add_argument("--text", type=int, default=64, help="text tokens around the image")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    theirs = build(args.shape)
    with tempfile.TemporaryDirectory() as folder:
        theirs.save_pretrained(folder)
        ours = load_vlm(folder, dtype="float32")
    size = ours.config.vision.image_size
    pixels = torch.randn(args.tiles, 3, size, size, generator=torch.Generator().manual_seed(1))
    image_tokens = args.tiles * ours.config.tokens_per_tile
    text = torch.randint(0, 500, (args.text,), generator=torch.Generator().manual_seed(2))
    ids = torch.cat([text[: args.text // 2], torch.full((image_tokens,), ours.image_token_id), text[args.text // 2 :]])
    ids = ids[None]

    ours_logits = ours(ids, pixels, last_only=True)
    theirs_logits = theirs(input_ids=ids, pixel_values=pixels, logits_to_keep=1).logits
    max_diff = float((ours_logits - theirs_logits).abs().max())

    results = {}
    for name, ours_fn, theirs_fn in [
        ("encoder", lambda: ours.encode_images(pixels), lambda: theirs.get_image_features(pixel_values=pixels)),
        (
            "prefill",
            lambda: ours(ids, pixels, last_only=True),
            lambda: theirs(input_ids=ids, pixel_values=pixels, logits_to_keep=1),
        ),
    ]:
        ours_fn(), theirs_fn()  # warm-up
        ours_times, theirs_times = [], []
        for _ in range(args.repeats):  # alternate, so load changes on a shared machine hit both alike
            ours_times.append(median_time(ours_fn, 1))
            theirs_times.append(median_time(theirs_fn, 1))
        results[name] = (statistics.median(ours_times), statistics.median(theirs_times))

    print(f"shape {args.shape}: {args.tiles} tiles of {size}px = {image_tokens} image tokens + {args.text} text tokens")
    print(f"threads {torch.get_num_threads()}, max |logit diff| {max_diff:.2e}")
    for name, (a, b) in results.items():
        print(f"{name:8s} puyu {a * 1000:9.1f} ms   transformers {b * 1000:9.1f} ms   ratio (theirs/ours) {b / a:5.2f}")


if __name__ == "__main__":
    main()
