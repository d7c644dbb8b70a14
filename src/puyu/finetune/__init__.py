"""Fine-tuning: SFT (full, LoRA, QLoRA), DPO and continued pretraining on the one training loop."""
