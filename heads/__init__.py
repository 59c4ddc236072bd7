"""Learning on cached features: head models, losses, metrics, the trainer, the head bundle and a run's files;
and fine-tuning a backbone's last blocks (heads.finetune)."""
