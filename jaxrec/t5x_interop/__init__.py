"""Interop with t5x: the network as t5x expects it (`network`), what `gin/t5x/*.gin` binds
(`bridge`), T5X checkpoints (`checkpoint`) and reading a `python -m t5x.train` MODEL_DIR
(`model_dir`). Nothing here imports t5x: these run with or without it installed."""
