"""SeqIO tasks for LLM recommenders (Cao et al. 2024; LC-Rec, Zheng et al. 2023).

vocab.py          RecVocabulary: SentencePiece + sentinels + item tokens as single ids
items.py          item representations: semantic ids, item_N, item_N "title", title
templates.py      several prompt templates per task (no user ids)
preprocessors.py  pure text preprocessors, one per task (docstrings show input -> output)
examples.py       which items of which user feed each task and split (no leakage)
user_info.py      LC-Rec `user.json` (queries, preferences) reader
registry.py       register_dataset_tasks(...) -> seqio Tasks and Mixtures; eval pieces
"""
