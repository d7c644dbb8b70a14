"""Tokenizers: loading (SentencePiece or Hugging Face), streaming detokenization, byte-level BPE training."""

from puyu.tokenizer.streaming import IncrementalDetokenizer
from puyu.tokenizer.tokenizer import Tokenizer
from puyu.tokenizer.train import byte_level_tokenizer, train_bpe

__all__ = ["IncrementalDetokenizer", "Tokenizer", "byte_level_tokenizer", "train_bpe"]
