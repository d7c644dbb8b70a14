"""VisionLanguageModel: the image encoder beside the one decoder.

The decoder is unchanged: image embeddings replace the embedding rows of the `<IMG_CONTEXT>`
placeholders (in order, one row per placeholder) and the result goes through `CausalLM` as
`inputs_embeds`, exactly as transformers' `InternVLModel` merges them.
"""

from __future__ import annotations

import torch
from torch import nn

from puyu.errors import PuyuError
from puyu.model.decoder import CausalLM
from puyu.model.kv_cache import KVCache
from puyu.model.vision.config import VLMConfig
from puyu.model.vision.encoder import ImageEncoder


def merge_image_embeddings(
    embeddings: torch.Tensor, input_ids: torch.Tensor, image_embeddings: torch.Tensor, image_token_id: int
) -> torch.Tensor:
    """Write `image_embeddings` [K, D] (all images' tokens, in prompt order) into the rows of `embeddings`
    [B, T, D] whose `input_ids` are the image placeholder; K must equal the number of placeholders."""
    mask = input_ids == image_token_id
    count = int(mask.sum())
    if count != image_embeddings.shape[0]:
        raise PuyuError(f"the prompt has {count} image placeholders but the images give {image_embeddings.shape[0]}")
    out = embeddings.clone()
    out[mask] = image_embeddings.to(out.dtype)
    return out


class VisionLanguageModel(nn.Module):
    """An InternVL model: `encoder` (ViT + shuffle + projector) and `language_model` (a `CausalLM`).

    Args:
        config: the InternVL shape.
    """

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ImageEncoder(config)
        self.language_model = CausalLM(config.text)

    @property
    def image_token_id(self) -> int:
        if self.config.image_token_id is None:
            raise PuyuError("the model's image token id is unknown (config has no image_token_id)")
        return self.config.image_token_id

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Embeddings [tiles · tokens_per_tile, width] of tiles [N, 3, S, S], in tile order."""
        features = self.encoder(pixel_values.to(device=self.encoder.device, dtype=self.encoder.dtype))
        return features.reshape(-1, features.shape[-1])

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings [B, T, D] with the images' embeddings at the placeholders."""
        embeddings = self.language_model.model.embed_tokens(input_ids)
        if pixel_values is None or pixel_values.shape[0] == 0:
            return embeddings
        return merge_image_embeddings(embeddings, input_ids, self.encode_images(pixel_values), self.image_token_id)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits [B, T, vocab] for `input_ids` [B, T] with the tiles `pixel_values` [N, 3, S, S] (all
        images of the batch, in placeholder order) at the `<IMG_CONTEXT>` positions."""
        embeddings = self.embed(input_ids, pixel_values)
        return self.language_model(
            input_ids, positions=positions, cache=cache, mask=mask, last_only=last_only, inputs_embeds=embeddings
        )

    def tie_weights(self) -> None:
        self.language_model.tie_weights()

    @property
    def device(self) -> torch.device:
        return self.language_model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.language_model.dtype
