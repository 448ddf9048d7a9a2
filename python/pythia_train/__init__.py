"""pythia-train: GPT-NeoX models with Hugging Face-compatible checkpoints and a thin trainer."""
